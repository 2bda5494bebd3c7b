//! The domains' small embedded stores (agent registry, alarms, alarm history, notifier state)
//! are each one redb file in the data directory, opened the same way: created if missing,
//! checked whole on open (so a damaged file is refused with redb's error rather than trusted),
//! with a cache sized for what the store keeps.

use std::path::Path;

/// Opens (or creates) `data_dir/name`.
pub fn open(
    data_dir: &Path,
    name: &str,
    cache_bytes: usize,
) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .set_check_integrity_on_open(true)
        .create(data_dir.join(name))
}

/// A `Debug` for a store type whose only field is its database.
#[macro_export]
macro_rules! opaque_debug {
    ($t:ty) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    };
}
