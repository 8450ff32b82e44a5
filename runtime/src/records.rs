//! Several entries of an append-only log stored under one sled key: the outbox's messages and
//! the orchestrator's change feed.
//!
//! Why: a sled key costs a log write when it is inserted and another when it is removed, and
//! every tenth write to a page rewrites the page. A log whose entries come in batches and leave
//! in order (the outbox once their confirms come, the feed once it is long enough) need not pay
//! that per entry: [`seal`] gathers what a batch appended into records of up to
//! [`MAX_RECORD_BYTES`], each keyed by its first entry's id. Every entry keeps its own id; a
//! reader finds the record that holds an id with [`holding`] and reads its entries with
//! [`entries`].
//!
//! A record of one entry is stored as the entry itself, so stores written before records existed
//! read as they are; a record of several starts with [`TAG`], which no entry of either log starts
//! with (a message's encoding starts with a big-endian length far below 2^24, so a zero; a
//! change is a JSON object, so `{`).

use sled::IVec;

use crate::writes::Writes;

/// Most bytes of entries one record holds; a larger entry is a record of its own. Why so small:
/// sled splits a leaf at 16 keys whatever their size, and writes a page of more than an eighth
/// of a segment (128 KiB) as a file of its own; 16 records of 4 KiB keep a leaf under that even
/// when records pile up (the broker away, a long feed). It still holds several commands,
/// replies or changes, which are a few hundred bytes each.
pub const MAX_RECORD_BYTES: usize = 4 * 1024;

/// The first byte of a record of several entries.
pub const TAG: u8 = 0xB5;

/// An entry's header in a record: its id (8 bytes) and its length (4), big-endian.
const HEADER: usize = 12;

/// Gathers the entries staged into `tree` in a batch's `writes` (keyed by their ids, big-endian)
/// into records, just before the batch is committed, and returns the keys of the records it
/// wrote, in order. Removals staged into `tree` stay as they are.
pub fn seal(writes: &Writes<'static>, tree: &sled::Tree) -> Vec<u64> {
    // Runs of consecutive entries, each within MAX_RECORD_BYTES unless it is one entry.
    let mut runs: Vec<(usize, Vec<(u64, IVec)>)> = Vec::new();
    for (key, value) in writes.take(tree) {
        let Some(entry) = value else {
            writes.remove(tree, key);
            continue;
        };
        let size = HEADER + entry.len();
        match runs.last_mut() {
            Some((bytes, run)) if *bytes + size <= MAX_RECORD_BYTES => {
                *bytes += size;
                run.push((key_id(&key), entry));
            }
            _ => runs.push((1 + size, vec![(key_id(&key), entry)])),
        }
    }
    let mut keys = Vec::with_capacity(runs.len());
    for (_, run) in runs {
        let first = run[0].0;
        keys.push(first);
        let record = match &run[..] {
            [(_, entry)] => entry.to_vec(),
            _ => encode(run.iter().map(|(id, entry)| (*id, &entry[..]))),
        };
        writes.insert(tree, &first.to_be_bytes(), record);
    }
    keys
}

/// A record of `entries`, which must come in increasing id order.
pub fn encode<'a>(entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut record = vec![TAG];
    for (id, entry) in entries {
        push(&mut record, id, entry);
    }
    record
}

fn push(record: &mut Vec<u8>, id: u64, entry: &[u8]) {
    record.extend_from_slice(&id.to_be_bytes());
    record.extend_from_slice(&u32::try_from(entry.len()).expect("an entry under 4 GiB").to_be_bytes());
    record.extend_from_slice(entry);
}

/// The entries of the record stored under `key`, each id with its bytes. A record that is one
/// entry (not tagged) is that entry, with the key as its id.
pub fn entries(key: u64, record: &[u8]) -> Result<Vec<(u64, &[u8])>, &'static str> {
    let Some((&TAG, mut rest)) = record.split_first() else {
        return Ok(vec![(key, record)]);
    };
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    while !rest.is_empty() {
        let (head, tail) = rest.split_at_checked(HEADER).ok_or("an entry's header is cut short")?;
        let id = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        let (entry, tail) = tail.split_at_checked(len).ok_or("an entry is cut short")?;
        // The ids of a record grow from its key, or `holding` would look in the wrong one.
        if id < key || out.last().is_some_and(|&(last, _)| id <= last) {
            return Err("its ids are out of order");
        }
        out.push((id, entry));
        rest = tail;
    }
    if out.is_empty() {
        return Err("it holds no entry");
    }
    Ok(out)
}

/// The key of the record in `tree` that may hold `id`: records are keyed by their first id and
/// never overlap, so it is the last key at or below `id`.
pub fn holding(tree: &sled::Tree, id: u64) -> Option<u64> {
    let (key, _) = tree.range(..=id.to_be_bytes()).next_back()?.ok()?;
    Some(key_id(&key))
}

/// The id a key stands for (8 bytes, big-endian; a shorter key counts as its low bytes).
pub fn key_id(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("log").unwrap();
        (dir, tree)
    }

    #[test]
    fn a_batch_is_cut_into_records_and_a_large_entry_is_one_of_its_own() {
        let (_dir, tree) = tree();
        let mut values: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 300]).collect();
        values.insert(7, vec![7; 3 * MAX_RECORD_BYTES]);
        let writes = Writes::new();
        for (id, value) in (1u64..).zip(&values) {
            writes.insert(&tree, &id.to_be_bytes(), value.clone());
        }
        let keys = seal(&writes, &tree);
        writes.commit().unwrap();
        assert_eq!(keys, tree.iter().keys().map(|k| key_id(&k.unwrap())).collect::<Vec<_>>());
        assert!(keys.len() > 2, "{keys:?}");
        let mut read = Vec::new();
        for record in tree.iter() {
            let (key, record) = record.unwrap();
            let entries = entries(key_id(&key), &record).unwrap();
            assert!(record.len() <= MAX_RECORD_BYTES || entries.len() == 1, "{} bytes", record.len());
            read.extend(entries.into_iter().map(|(id, e)| (id, e.to_vec())));
        }
        assert_eq!(read, (1..).zip(values).collect::<Vec<_>>());
        assert_eq!(holding(&tree, 8), Some(8), "the large entry stands alone");
        assert_eq!(holding(&tree, 0), None);
    }

    #[test]
    fn a_record_that_is_cut_short_or_out_of_order_is_refused() {
        let mut cut = encode([(3, &b"three"[..])]);
        cut.pop();
        assert!(entries(3, &cut).is_err());
        assert!(entries(8, &encode([(9, &b"9"[..]), (8, &b"8"[..])])).is_err());
        assert!(entries(5, &encode([(4, &b"4"[..])])).is_err(), "an id below its key");
        assert!(entries(5, &[TAG]).is_err());
        assert_eq!(entries(5, b"{}").unwrap(), [(5, &b"{}"[..])]);
    }

    proptest! {
        /// Whatever the bytes: refused, or entries within the record, in order, from its key.
        #[test]
        fn any_record_is_read_as_ordered_entries_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512), key in any::<u64>()) {
            let mut record = vec![TAG];
            record.extend(bytes);
            if let Ok(read) = entries(key, &record) {
                prop_assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
                prop_assert!(read[0].0 >= key);
                prop_assert!(read.iter().map(|(_, e)| e.len() + HEADER).sum::<usize>() == record.len() - 1);
            }
        }
    }
}
