//! Feeds arbitrary bytes to the PROXY protocol header parser, whole and as growing prefixes (as
//! a connection delivers them), and checks that a complete header never claims more bytes than
//! it was given and that the answer does not change once the header is complete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_proto::{parse_proxy_header, ProxyParse};

fuzz_target!(|data: &[u8]| {
    let whole = parse_proxy_header(data);
    if let Ok(ProxyParse::Complete(h)) = &whole {
        assert!(h.len <= data.len());
        assert_eq!(
            parse_proxy_header(&data[..h.len]),
            Ok(ProxyParse::Complete(h.clone()))
        );
    }
    // Growing prefixes, a few bytes at a time: each is either incomplete, or the final answer.
    let mut at = 0;
    while at < data.len() {
        at = (at + 1 + usize::from(data[at] % 7)).min(data.len());
        match parse_proxy_header(&data[..at]) {
            Ok(ProxyParse::Incomplete { needed }) => assert!(needed >= 1),
            Ok(ProxyParse::Complete(h)) => {
                assert_eq!(whole, Ok(ProxyParse::Complete(h)));
                break;
            }
            Err(e) => {
                assert_eq!(whole, Err(e));
                break;
            }
        }
    }
});
