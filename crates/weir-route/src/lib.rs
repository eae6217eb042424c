//! Tag patterns and routing: Fluentd's `<match>`/`<filter>` pattern language, compiled once.
