//! Fluentd v1 configuration syntax: parsing files into directives that remember their file and
//! line, typed access to parameters, and errors that say exactly where they are.
