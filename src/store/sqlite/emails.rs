//! The email filter of one SQLite load: a Bloom filter of the accounts' email keys, so that a
//! new email (nearly every email of a create) is known free without probing the index.
//!
//! Owns: `EmailFilter` (when to build it, its bounds, what it answers) and `Bloom`.
//! Must not: say an email is in use (only "surely not" or "ask the store"), or outlive its load's
//! transaction: it is exact only because the load holds SQLite's write lock (`BEGIN IMMEDIATE`)
//! from before it is built until the end, and every write of `accounts.email_key` inside the load
//! goes through `SqliteTx::insert_row`, `update` and `update_in_place`, which `note` the key. A key
//! noted for a write that then failed or was rolled back to a savepoint stays in: that only
//! makes a probe happen, never skips one that was needed.
//!
//! Why: the email rule's probe was an eighth of a create's store work (bench/README "Issue 10,
//! fifth round"), where the raw loop and json_each check no rule. The filter is built from the
//! email index in one scan, which costs about what a few dozen probes do per thousand rows, so
//! it is built only once a load has probed enough for the scan to pay (`PAYS`) and the store is
//! small enough for its bound (`MAX_BITS`): a handful of records against a big store keep
//! probing as before.

use rusqlite::Connection;

/// Probes a load makes before it first asks whether a filter would pay.
const FIRST_TRY: u64 = 1024;
/// The filter is built when the accounts number at most this many times the probes made.
const PAYS: u64 = 16;
/// Bits per key the filter is sized for (one 64-bit word per key hash, 4 bits set in it: about
/// 3% of free emails still probe at this load).
const BITS_PER_KEY: usize = 8;
/// The filter's bound: 1 MiB (1,048,576 keys at `BITS_PER_KEY`; a pass over a big file peaks
/// at 92-97 MiB with its 64 MiB page cache, against a 100 MiB target). A store with more
/// accounts, or a load that takes it past, probes every email as before.
const MAX_BITS: usize = 8 << 20;
/// The smallest filter built (keys).
const MIN_KEYS: usize = 1 << 16;

/// What a load knows of the email keys in use.
#[derive(Default)]
pub(super) struct EmailFilter {
    probes: u64,
    next_try: u64,
    bloom: Option<Bloom>,
    /// Keys the filter is sized for, and keys it holds (scanned and noted).
    capacity: usize,
    held: usize,
    /// Given up for this load (the store or the load outgrew `MAX_BITS`).
    off: bool,
}

impl EmailFilter {
    /// True when `key` is surely not the email key of any account; false means "probe". May
    /// build the filter (a scan of the email index on `conn`, inside the load's transaction).
    pub(super) fn surely_free(&mut self, conn: &Connection, key: &str) -> rusqlite::Result<bool> {
        self.probes += 1;
        if self.bloom.is_none() {
            if self.off || self.probes < self.next_try.max(FIRST_TRY) {
                return Ok(false);
            }
            // An upper bound of the accounts' number (their ids are distinct positive integers).
            let rows: i64 =
                conn.query_row("SELECT coalesce(max(id), 0) FROM accounts", [], |r| {
                    r.get(0)
                })?;
            let rows = usize::try_from(rows).unwrap_or(usize::MAX);
            if rows as u64 > self.probes.saturating_mul(PAYS) {
                self.next_try = self.probes.saturating_mul(2);
                return Ok(false);
            }
            self.build(conn, rows.saturating_mul(2))?;
        }
        Ok(self.bloom.as_ref().is_some_and(|b| !b.may_hold(key)))
    }

    /// A write is about to give an account this email key.
    pub(super) fn note(&mut self, conn: &Connection, key: &str) -> rusqlite::Result<()> {
        let Some(b) = &mut self.bloom else {
            return Ok(());
        };
        b.add(key);
        self.held += 1;
        if self.held > self.capacity {
            // Built again, larger (up to the bound), from the index (which has this load's
            // writes so far); the key just noted is added again after the scan, its write not
            // having run yet.
            let larger = self.capacity.saturating_mul(4).min(MAX_BITS / BITS_PER_KEY);
            if larger <= self.capacity {
                (self.bloom, self.off) = (None, true);
                return Ok(());
            }
            self.build(conn, larger)?;
            if let Some(b) = &mut self.bloom {
                b.add(key);
                self.held += 1;
            }
        }
        Ok(())
    }

    /// (Re)builds the filter for `keys` keys from the email index, or turns it off for the load
    /// when that is past the bound.
    fn build(&mut self, conn: &Connection, keys: usize) -> rusqlite::Result<()> {
        self.bloom = None;
        let keys = keys.max(MIN_KEYS);
        let bits = keys.saturating_mul(BITS_PER_KEY).next_power_of_two();
        if bits > MAX_BITS {
            self.off = true;
            return Ok(());
        }
        let mut b = Bloom::new(bits);
        let mut held = 0;
        let mut st = conn.prepare("SELECT email_key FROM accounts WHERE email_key IS NOT NULL")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            if let rusqlite::types::ValueRef::Text(t) = r.get_ref(0)? {
                b.add_bytes(t);
                held += 1;
            }
        }
        if held > keys {
            self.off = true;
            return Ok(());
        }
        (self.bloom, self.capacity, self.held) = (Some(b), keys, held);
        Ok(())
    }
}

/// A blocked Bloom filter: each key sets 4 bits in one 64-bit word (one memory access a query).
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn new(bits: usize) -> Self {
        Bloom {
            words: vec![0; (bits / 64).max(1)],
        }
    }

    /// The word's index and the key's 4 bits in it, from one 64-bit hash.
    fn spot(&self, key: &[u8]) -> (usize, u64) {
        let h = hash(key);
        // `words.len()` is a power of two: the low bits pick the word, the high ones the bits.
        let at = (h as usize) & (self.words.len() - 1);
        let mask = (0..4).fold(0u64, |m, i| m | 1 << ((h >> (40 + 6 * i)) & 63));
        (at, mask)
    }

    fn add_bytes(&mut self, key: &[u8]) {
        let (at, mask) = self.spot(key);
        self.words[at] |= mask;
    }

    fn add(&mut self, key: &str) {
        self.add_bytes(key.as_bytes());
    }

    fn may_hold(&self, key: &str) -> bool {
        let (at, mask) = self.spot(key.as_bytes());
        self.words[at] & mask == mask
    }
}

/// FNV-1a over the bytes, then MurmurHash3's finalizer (FNV alone mixes its high bits poorly).
fn hash(key: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(n: usize) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email_key TEXT);
             CREATE INDEX accounts_email ON accounts (email_key) WHERE email_key IS NOT NULL;",
        )
        .unwrap();
        for i in 0..n {
            c.execute(
                "INSERT INTO accounts (email_key) VALUES (?1)",
                [format!("a{i}@x.example")],
            )
            .unwrap();
        }
        c
    }

    /// Never "free" for a key in the store or noted, whatever the order of scans, notes and
    /// rebuilds; free for most others once built; not built before it pays.
    #[test]
    fn never_says_free_for_a_key_in_use() {
        let c = store(5000);
        let mut f = EmailFilter::default();
        // Fewer probes than FIRST_TRY: no filter, every answer is "probe".
        for i in 0..FIRST_TRY - 1 {
            assert!(!f.surely_free(&c, &format!("new{i}")).unwrap());
        }
        assert!(f.bloom.is_none());
        let mut free = 0;
        for i in 0..200_000 {
            let key = format!("new{i}");
            if f.surely_free(&c, &key).unwrap() {
                free += 1;
            }
            // Half the new keys are written (noted, then inserted, as SqliteTx does).
            if i % 2 == 0 {
                f.note(&c, &key).unwrap();
                c.execute("INSERT INTO accounts (email_key) VALUES (?1)", [&key])
                    .unwrap();
            }
        }
        assert!(f.bloom.is_some() && !f.off);
        assert!(f.capacity >= 100_000, "rebuilt larger: {}", f.capacity);
        assert!(free > 190_000, "{free} of 200000 new keys known free");
        for i in 0..5000 {
            assert!(!f.surely_free(&c, &format!("a{i}@x.example")).unwrap());
        }
        for i in (0..200_000).step_by(2) {
            assert!(!f.surely_free(&c, &format!("new{i}")).unwrap(), "new{i}");
        }
    }

    /// A store much larger than the probes made is not scanned; one past the bound never is.
    #[test]
    fn is_built_only_when_it_pays_and_fits() {
        let c = store(20_000);
        let mut f = EmailFilter::default();
        for i in 0..FIRST_TRY {
            assert!(!f.surely_free(&c, &format!("n{i}")).unwrap());
        }
        assert!(f.bloom.is_none(), "20000 accounts > 16 x 1024 probes");
        assert_eq!(f.next_try, 2 * FIRST_TRY);
        for i in 0..FIRST_TRY {
            f.surely_free(&c, &format!("m{i}")).unwrap();
        }
        assert!(f.bloom.is_some(), "20000 <= 16 x 2048");

        let mut f = EmailFilter {
            probes: u64::MAX / 32,
            ..Default::default()
        };
        c.execute(
            "INSERT INTO accounts (id, email_key) VALUES (3000000, 'z')",
            [],
        )
        .unwrap();
        assert!(!f.surely_free(&c, "q").unwrap());
        assert!(
            f.off && f.bloom.is_none(),
            "6M keys' bits are past MAX_BITS"
        );
    }

    /// A load that outgrows its filter gets one as large as the bound allows, then none.
    #[test]
    fn grows_up_to_its_bound_then_gives_up() {
        let c = store(10);
        let most = MAX_BITS / BITS_PER_KEY;
        let mut f = EmailFilter {
            probes: FIRST_TRY,
            ..Default::default()
        };
        assert!(f.surely_free(&c, "x@y").unwrap());
        // As if the load had noted all that a filter a third of the bound holds.
        f.capacity = most / 3;
        f.held = f.capacity;
        f.note(&c, "k1").unwrap();
        assert_eq!(f.capacity, most, "clamped to the bound, not 4x");
        assert!(!f.surely_free(&c, "k1").unwrap() && f.surely_free(&c, "k2").unwrap());
        f.held = f.capacity;
        f.note(&c, "k3").unwrap();
        assert!(f.off && f.bloom.is_none());
        assert!(
            !f.surely_free(&c, "k4").unwrap(),
            "off: every email is probed"
        );
    }
}
