//! `source_address_key`, `source_hostname_key` and `source_vpce_id_key`: keys added to every
//! record of a connection.
//!
//! Records stay msgpack bytes; adding keys rewrites each map's header with the larger count and
//! appends the new pairs after the existing ones, which is what a Ruby hash assignment does to
//! key order.

use bytes::BytesMut;
use weir_proto::msgpack::{read_header, write_map_len, write_str, Header};
use weir_proto::{EntryRef, EventBatch};

use super::config::{normalize, ForwardConfig};
use super::proxy::Peer;

/// The key/value pairs to add to every record of one connection.
pub(crate) struct ExtraKeys {
    pairs: Vec<(String, String)>,
}

/// Works out the extra keys for a connection from `peer` (the client a PROXY header named, if
/// any), resolving its host name once if asked.
pub(crate) async fn extra_keys(cfg: &ForwardConfig, peer: &Peer) -> Option<ExtraKeys> {
    let mut pairs = Vec::new();
    let ip = normalize(peer.addr.ip());
    if let Some(key) = &cfg.source_address_key {
        pairs.push((key.clone(), ip.to_string()));
    }
    if let Some(key) = &cfg.source_hostname_key {
        let name = if cfg.resolve_hostname {
            tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip).ok())
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        // Fluentd falls back to the address when the name cannot be resolved.
        pairs.push((key.clone(), name.unwrap_or_else(|| ip.to_string())));
    }
    // A connection that did not come through a VPC endpoint has no id: the key is left out
    // rather than set to an empty or made-up value.
    if let (Some(key), Some(id)) = (&cfg.source_vpce_id_key, &peer.vpce_id) {
        pairs.push((key.clone(), id.clone()));
    }
    (!pairs.is_empty()).then_some(ExtraKeys { pairs })
}

/// A record's map header: (entries, header length). None if the bytes are not a map.
fn map_header(record: &[u8]) -> Option<(u32, usize)> {
    match read_header(record, 0) {
        Ok((Header::Map(n), len)) => Some((n, len)),
        _ => None,
    }
}

/// Returns the batch with the extra keys added to every record.
pub(crate) fn add_keys(batch: &EventBatch, keys: &ExtraKeys) -> EventBatch {
    let extra_len: usize = keys.pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut out = BytesMut::with_capacity(batch.byte_len() + batch.len() * (extra_len + 5));
    let mut entries = Vec::with_capacity(batch.len());
    let mut scratch = Vec::with_capacity(64);
    for (time, record) in batch.iter() {
        let Some((count, header)) = map_header(record) else {
            continue; // the codec only yields maps
        };
        let start = out.len();
        scratch.clear();
        write_map_len(
            &mut scratch,
            (count as usize).saturating_add(keys.pairs.len()),
        );
        out.extend_from_slice(&scratch);
        out.extend_from_slice(record.get(header..).unwrap_or_default());
        for (k, v) in &keys.pairs {
            scratch.clear();
            write_str(&mut scratch, k.as_bytes());
            write_str(&mut scratch, v.as_bytes());
            out.extend_from_slice(&scratch);
        }
        let end = out.len();
        entries.push(EntryRef {
            time,
            start: start as u32,
            end: end as u32,
        });
    }
    EventBatch::new(out.freeze(), entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::EventTime;

    #[test]
    fn keys_are_appended_to_each_record() {
        let record = rmpv::Value::Map(vec![("k".into(), "v".into())]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &record).unwrap();
        let len = bytes.len() as u32;
        let batch = EventBatch::new(
            bytes.into(),
            vec![EntryRef {
                time: EventTime::new(1, 2),
                start: 0,
                end: len,
            }],
        );
        let keys = ExtraKeys {
            pairs: vec![("source".into(), "10.0.0.1".into())],
        };
        let out = add_keys(&batch, &keys);
        let (time, rec) = out.iter().next().unwrap();
        assert_eq!(time, EventTime::new(1, 2));
        let v = rmpv::decode::read_value(&mut &rec[..]).unwrap();
        assert_eq!(
            v,
            rmpv::Value::Map(vec![
                ("k".into(), "v".into()),
                ("source".into(), "10.0.0.1".into())
            ])
        );
    }

    #[test]
    fn map_headers_of_every_width() {
        assert_eq!(map_header(&[0x80]), Some((0, 1)));
        assert_eq!(map_header(&[0x8f]), Some((15, 1)));
        assert_eq!(map_header(&[0xde, 0x01, 0x00]), Some((256, 3)));
        assert_eq!(map_header(&[0xdf, 0, 1, 0, 0]), Some((65536, 5)));
        assert_eq!(map_header(&[0xde, 0x01]), None);
        assert_eq!(map_header(&[0x90]), None);
    }
}
