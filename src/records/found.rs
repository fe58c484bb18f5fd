//! The relation cache: loans and brokers the records of one relation load name, by how they were
//! named (thread id or lender id), with what a record needs of them (row id, a loan's division).
//!
//! Owns: `FoundCache`, its bounds (entries and key bytes per map) and its eviction.
//! Must not: reach the store (the `Writer` asks the store on a miss and keeps the answer here),
//! or outlive a load (see the soundness note on `FoundCache`).
//!
//! A relation file names the same loan many times (one lookup per record was a third of a
//! relation load's store work, bench/README.md "Issue 10"). An entry is 16 bytes and its key's
//! bytes in one arena per map (a `HashMap<Box<str>, _>` took ~64 bytes an entry and a heap block
//! per key): a map holds up to `MAX_ENTRIES` keys within `MAX_KEY_BYTES`, ~3 MiB full with
//! 12-byte keys, so that the 100,000 loans a relation phase of bench/run.sh names at N=1M fit
//! (the former 64k entries missed two lookups in three there: bench/README "Issue 10, fifth
//! round").

use super::write::Hit;

/// Keys per map before it drops some: seven eighths of 2^17, the most a table of 2^17 buckets
/// holds (17 bytes a bucket: 2.1 MiB).
const MAX_ENTRIES: usize = (1 << 17) / 8 * 7;
/// Key bytes per map before it drops some.
const MAX_KEY_BYTES: usize = 2 << 20;
/// `Entry::division` of a found row with no division.
const NO_DIVISION: u16 = u16::MAX;
/// `Entry::division` of a name that matched no row.
const NOT_FOUND: u16 = u16::MAX - 1;

/// Loans and brokers found by the relation records of one load. Sound because a `Writer` lives
/// for one load, a load holds one record type, and relation types never write the loans or
/// brokers tables they look up (only their links), so an answer stays true for the whole load.
/// Bounded: a full map drops about an eighth of its entries, chosen at random (`evict`); emptying
/// a full map whole missed every time on a round robin over more loans than it holds, random
/// evictions keep serving some.
#[derive(Default)]
pub(super) struct FoundCache {
    /// [loans by thread id, loans by LoanNumber, brokers by thread id, brokers by IdNumber]
    maps: [Named; 4],
    /// Evictions so far: each drops another random eighth.
    evictions: u64,
}

/// One map: entries in a table, their keys' bytes one after the other in `keys`.
#[derive(Default)]
struct Named {
    table: hashbrown::HashTable<Entry>,
    keys: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Entry {
    id: i64,
    /// Where the key's bytes are in `Named::keys`.
    at: u32,
    len: u16,
    /// A loan's division as an index into the lender's, or `NO_DIVISION`, or `NOT_FOUND`.
    division: u16,
}

impl Entry {
    /// The entry's key in its map's arena.
    fn key<'k>(&self, keys: &'k [u8]) -> &'k [u8] {
        &keys[self.at as usize..self.at as usize + usize::from(self.len)]
    }
}

impl FoundCache {
    /// What the load learnt of `key` in map `slot`: `None` when it never asked (or forgot),
    /// `Some(None)` when no row has that name.
    pub(super) fn get(&self, slot: usize, key: &str) -> Option<Option<Hit>> {
        let m = &self.maps[slot];
        let e = m
            .table
            .find(fnv(key.as_bytes()), |e| e.key(&m.keys) == key.as_bytes())?;
        Some(match e.division {
            NOT_FOUND => None,
            NO_DIVISION => Some(Hit {
                id: e.id,
                division: None,
            }),
            d => Some(Hit {
                id: e.id,
                division: Some(d),
            }),
        })
    }

    /// Keeps `hit` under `key` in map `slot`, making room first when the map is full. A key
    /// already there, one too long to keep, or a division index past the entry's range is not
    /// kept (the store is asked again: the cache only saves work).
    pub(super) fn insert(&mut self, slot: usize, key: &str, hit: Option<Hit>) {
        let division = match hit {
            None => NOT_FOUND,
            Some(Hit { division: None, .. }) => NO_DIVISION,
            Some(Hit {
                division: Some(d), ..
            }) if d < NOT_FOUND => d,
            Some(_) => return,
        };
        let Ok(len) = u16::try_from(key.len()) else {
            return;
        };
        let hash = fnv(key.as_bytes());
        let m = &self.maps[slot];
        if m.table
            .find(hash, |e| e.key(&m.keys) == key.as_bytes())
            .is_some()
        {
            return;
        }
        if m.table.len() >= MAX_ENTRIES || m.keys.len() + key.len() > MAX_KEY_BYTES {
            self.evict(slot);
        }
        let Named { table, keys } = &mut self.maps[slot];
        let Ok(at) = u32::try_from(keys.len()) else {
            return;
        };
        keys.extend_from_slice(key.as_bytes());
        let entry = Entry {
            id: hit.map_or(0, |h| h.id),
            at,
            len,
            division,
        };
        let arena: &[u8] = keys;
        table.insert_unique(hash, entry, |e| fnv(e.key(arena)));
    }

    /// Makes room in a full map: drops the entries whose key, hashed with this eviction's number,
    /// falls in one eighth (their keys' bytes too: the kept ones are copied to a new arena), and
    /// empties the map if that left it more than fifteen sixteenths full (so that an eviction,
    /// a pass over the map, always makes room for many inserts).
    fn evict(&mut self, slot: usize) {
        self.evictions += 1;
        let salt = self.evictions.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = &mut self.maps[slot];
        let old = std::mem::take(&mut m.keys);
        let mut kept = Vec::with_capacity(old.len());
        m.table.retain(|e| {
            let key = e.key(&old);
            let drop = (fnv(key) ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61 == 0;
            if !drop {
                // The new arena is no longer than the old one, whose offsets fit in u32.
                e.at = kept.len() as u32;
                kept.extend_from_slice(key);
            }
            !drop
        });
        if m.table.len() > MAX_ENTRIES - MAX_ENTRIES / 16
            || kept.len() > MAX_KEY_BYTES - MAX_KEY_BYTES / 16
        {
            m.table.clear();
            kept.clear();
        }
        m.keys = kept;
    }

    #[cfg(test)]
    fn len(&self, slot: usize) -> usize {
        self.maps[slot].table.len()
    }
}

/// FNV-1a: the cache's keys are short ids, where SipHash was a visible share of a relation
/// add's work and flooding is no concern (the keys are the lender's own, the map bounded).
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes in comes out: found rows with and without a division, names that matched no
    /// row, keys of every length it keeps, and the ones it does not keep are simply not there.
    #[test]
    fn answers_what_it_was_told() {
        let mut c = FoundCache::default();
        let long = "x".repeat(70_000);
        c.insert(
            0,
            "a",
            Some(Hit {
                id: 7,
                division: None,
            }),
        );
        c.insert(
            0,
            "b",
            Some(Hit {
                id: 8,
                division: Some(3),
            }),
        );
        c.insert(0, "c", None);
        c.insert(
            0,
            "",
            Some(Hit {
                id: 9,
                division: None,
            }),
        );
        c.insert(
            0,
            &long,
            Some(Hit {
                id: 10,
                division: None,
            }),
        );
        c.insert(
            0,
            "d",
            Some(Hit {
                id: 11,
                division: Some(NOT_FOUND),
            }),
        );
        c.insert(1, "a", None);
        let got = |c: &FoundCache, s, k| c.get(s, k).map(|h| h.map(|h| (h.id, h.division)));
        assert_eq!(got(&c, 0, "a"), Some(Some((7, None))));
        assert_eq!(got(&c, 0, "b"), Some(Some((8, Some(3)))));
        assert_eq!(got(&c, 0, "c"), Some(None));
        assert_eq!(got(&c, 0, ""), Some(Some((9, None))));
        assert_eq!(got(&c, 0, &long), None, "too long a key is not kept");
        assert_eq!(
            got(&c, 0, "d"),
            None,
            "a division past the range is not kept"
        );
        assert_eq!(got(&c, 0, "A"), None, "keys are exact");
        assert_eq!(got(&c, 1, "a"), Some(None), "maps are apart");
        assert_eq!(got(&c, 2, "a"), None);
        // A second insert of a kept key changes nothing.
        c.insert(
            0,
            "a",
            Some(Hit {
                id: 99,
                division: None,
            }),
        );
        assert_eq!(got(&c, 0, "a"), Some(Some((7, None))));
        assert_eq!(c.len(0), 4);
    }

    /// A full map keeps about seven eighths of its entries (right ones, keys and all) and never
    /// grows past its bounds; on a round robin over more keys than it holds it still answers a
    /// good share (emptying it whole answered none).
    #[test]
    fn a_full_map_keeps_most_entries_and_stays_bounded() {
        let mut c = FoundCache::default();
        let n = MAX_ENTRIES as i64 * 3 / 2;
        let mut hits = 0;
        for round in 0..3 {
            for i in 0..n {
                let key = format!("L{i:09}");
                match c.get(1, &key) {
                    Some(h) => {
                        assert_eq!(h.map(|h| h.id), Some(i), "{key}");
                        if round > 0 {
                            hits += 1;
                        }
                    }
                    None => {
                        let (full, evictions) = (c.len(1) >= MAX_ENTRIES, c.evictions);
                        c.insert(
                            1,
                            &key,
                            Some(Hit {
                                id: i,
                                division: None,
                            }),
                        );
                        if full {
                            assert_eq!(c.evictions, evictions + 1);
                            let kept = c.len(1) - 1;
                            assert!(
                                kept > MAX_ENTRIES * 3 / 4 && kept < MAX_ENTRIES * 15 / 16,
                                "{kept} kept"
                            );
                            assert_eq!(c.maps[1].keys.len(), (kept + 1) * key.len());
                        }
                        assert!(c.len(1) <= MAX_ENTRIES);
                    }
                }
            }
        }
        assert!(c.evictions > 2);
        assert!(hits > n * 6 / 10, "{hits} hits in two rounds of {n}");
    }

    /// Long keys fill the key bytes before the entries: the map stays within `MAX_KEY_BYTES`
    /// and keeps answering right.
    #[test]
    fn long_keys_are_bounded_by_their_bytes() {
        let mut c = FoundCache::default();
        for i in 0..60_000i64 {
            let key = format!("{i:0>200}");
            c.insert(
                3,
                &key,
                Some(Hit {
                    id: i,
                    division: Some(1),
                }),
            );
            assert!(c.maps[3].keys.len() <= MAX_KEY_BYTES);
        }
        assert!(c.evictions > 0);
        let key = format!("{:0>200}", 59_999);
        assert_eq!(c.get(3, &key).map(|h| h.map(|h| h.id)), Some(Some(59_999)));
        for (i, e) in c.maps[3].table.iter().enumerate().take(1000) {
            let k = std::str::from_utf8(e.key(&c.maps[3].keys)).unwrap();
            assert_eq!(k.parse::<i64>().unwrap(), e.id, "entry {i}");
        }
    }
}
