//! Arbitrary client paths through the SFTP chroot resolver, from an arbitrary current folder.
//! Checks the resolver's invariant: whatever is accepted maps to the home or below it, through
//! plain names only, and resolving the result again changes nothing. Any panic is a bug.
#![no_main]

use bulkload::sftp::path::{resolve, resolve_bytes, VirtualPath};
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    // The first line (if any) sets the current folder, the rest is the request.
    let (cwd_bytes, req) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let cwd = resolve_bytes(cwd_bytes, &VirtualPath::root()).unwrap_or_default();
    let Ok(v) = resolve_bytes(req, &cwd) else {
        return;
    };
    let home = Path::new("/srv/bulkload/lenders/demo");
    let real = v.to_real(home);
    assert!(real.starts_with(home), "{real:?} escapes {home:?}");
    let names: Vec<_> = real.strip_prefix(home).unwrap().components().collect();
    for (i, c) in names.iter().enumerate() {
        match c {
            Component::Normal(n) => {
                let n = n.to_str().unwrap();
                assert!(!n.is_empty() && !n.contains('/'));
                // Hidden: only a last name directly in an upload folder.
                if n.starts_with('.') {
                    let p = v.parts();
                    assert!(i + 1 == names.len() && i == 3 && p[1] == "import");
                    assert!(p[2] == "pickup" || p[2] == "validate");
                }
                assert!(!n.chars().any(char::is_control));
            }
            other => panic!("non-plain component {other:?} in {real:?}"),
        }
    }
    for p in v.real_prefixes(home) {
        assert!(p.starts_with(home));
    }
    let again = resolve(&v.to_string(), &VirtualPath::root()).unwrap();
    assert_eq!(again, v);
    let _ = v.is_pickup_file(&["sandbox".to_string(), "production".to_string()]);
});
