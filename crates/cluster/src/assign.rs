//! Which collector owns which shard: every collector computes this from the same member list
//! and gets the same answer, so no one hands shards out.
//!
//! Each shard ranks the members by a hash of (member, shard), highest first (rendezvous
//! hashing: a member that joins or leaves changes the top choice of about `S/n` shards only).
//! Shards then take, in shard order, the first member on their ranking that still has room,
//! where room means fewer than `S/n` shards, or exactly `S/n` while fewer than `S mod n`
//! members hold `S/n + 1`: so owned counts differ by at most one.
//!
//! The hash is written out (FNV-1a, then a 64-bit finaliser) rather than std's hasher, whose
//! output may change between Rust releases: collectors of different builds must agree.

/// FNV-1a over `member`, `/`, and the shard number, then the splitmix64 finaliser.
fn score(member: &str, shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([b'/']).chain(shard.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The owner of each of `shards` shards, as an index into `members` (which must be sorted and
/// without repeats; the caller sorts). Empty when there are no members.
pub fn assign(members: &[String], shards: u32) -> Vec<usize> {
    let n = members.len();
    if n == 0 {
        return Vec::new();
    }
    let base = shards as usize / n;
    let extra = shards as usize % n;
    let mut counts = vec![0usize; n];
    let mut at_ceiling = 0usize;
    let mut out = Vec::with_capacity(shards as usize);
    let mut ranking: Vec<usize> = (0..n).collect();
    for shard in 0..shards {
        ranking.sort_by_key(|&m| (std::cmp::Reverse(score(&members[m], shard)), m));
        let pick = ranking
            .iter()
            .copied()
            .find(|&m| counts[m] < base || (counts[m] == base && at_ceiling < extra));
        // there is always room: the caps add up to `shards`
        let m = pick.unwrap_or(ranking[0]);
        counts[m] += 1;
        if counts[m] == base + 1 {
            at_ceiling += 1;
        }
        out.push(m);
    }
    out
}

/// The shards `me` owns among `members` (sorted, unique).
pub fn owned_by(members: &[String], shards: u32, me: &str) -> Vec<u32> {
    let Some(i) = members.iter().position(|m| m == me) else { return Vec::new() };
    assign(members, shards)
        .iter()
        .enumerate()
        .filter(|&(_, &m)| m == i)
        .map(|(s, _)| s as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("collector-{i}")).collect();
        v.sort();
        v
    }

    #[test]
    fn every_shard_has_one_owner_and_counts_differ_by_at_most_one() {
        for n in 1..=9 {
            for shards in [1u32, 7, 64, 100] {
                let a = assign(&names(n), shards);
                assert_eq!(a.len(), shards as usize);
                let mut counts = vec![0; n];
                for &m in &a {
                    counts[m] += 1;
                }
                let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(hi - lo <= 1, "n={n} shards={shards} counts={counts:?}");
                let owned: usize =
                    names(n).iter().map(|m| owned_by(&names(n), shards, m).len()).sum();
                assert_eq!(owned, shards as usize);
            }
        }
        assert!(assign(&[], 64).is_empty());
        assert!(owned_by(&names(3), 64, "stranger").is_empty());
    }

    #[test]
    fn a_member_joining_or_leaving_moves_few_shards() {
        // 3 -> 4 collectors: the newcomer takes its 16 shards; the greedy pass moves a few
        // more, far fewer than a full reshuffle (which would move about 48)
        let (before, after) = (names(3), names(4));
        let (a, b) = (assign(&before, 64), assign(&after, 64));
        let moved = (0..64).filter(|&s| before[a[s]] != after[b[s]]).count();
        assert!((16..=28).contains(&moved), "moved {moved}");
        // one of 4 dies: its 16 shards move, and a few others
        let left: Vec<String> = after.iter().filter(|m| *m != "collector-2").cloned().collect();
        let c = assign(&left, 64);
        let moved = (0..64).filter(|&s| after[b[s]] != left[c[s]]).count();
        assert!((16..=28).contains(&moved), "moved {moved}");
    }

    proptest! {
        #[test]
        fn balanced_for_any_member_names(
            mut ms in proptest::collection::btree_set("[a-z0-9:.-]{1,12}", 1..12),
            shards in 1u32..200,
        ) {
            let members: Vec<String> = std::mem::take(&mut ms).into_iter().collect();
            let a = assign(&members, shards);
            let mut counts = vec![0usize; members.len()];
            for &m in &a {
                counts[m] += 1;
            }
            let lo = *counts.iter().min().unwrap();
            let hi = *counts.iter().max().unwrap();
            prop_assert!(hi - lo <= 1);
            prop_assert_eq!(a, assign(&members, shards));
        }
    }
}
