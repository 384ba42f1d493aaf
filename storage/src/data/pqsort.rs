//! Redis's partial quicksort (`pqsort`, after Bentley and McIlroy's BSD qsort): sorts a
//! slice only as far as needed for the positions `lrange..=rrange` to hold what a full sort
//! would put there. Geo searches with COUNT use it, and which of several equally distant
//! members they return depends on its exact steps, so this follows them one by one.

use std::cmp::Ordering;

/// Sorts `v` by `cmp` so that `v[lrange..=rrange]` is in its sorted place.
pub fn pqsort<T>(v: &mut [T], lrange: usize, rrange: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    partial(v, 0, v.len(), (lrange, rrange), cmp);
}

/// The median of three positions, as BSD's `med3` picks it.
fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]) == Ordering::Less {
        if cmp(&v[b], &v[c]) == Ordering::Less {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Ordering::Greater {
        b
    } else if cmp(&v[a], &v[c]) == Ordering::Less {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// Whether `len` elements from `start` reach into the wanted positions.
fn wanted(start: usize, len: usize, (l, r): (usize, usize)) -> bool {
    let end = start + len - 1;
    !((l < start && r < start) || (l > end && r > end))
}

fn partial<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    range: (usize, usize),
    cmp: &impl Fn(&T, &T) -> Ordering,
) {
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]) == Ordering::Greater {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let r = (pa - a).min(pb - pa);
        vecswap(v, a, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - r, r);
        let r = pb - pa;
        if r > 1 && wanted(a, r, range) {
            partial(v, a, r, range, cmp);
        }
        let r = pd - pc;
        if r <= 1 {
            return;
        }
        a = pn - r;
        n = r;
        if !wanted(a, n, range) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wanted_positions_are_sorted() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for len in [1usize, 5, 7, 8, 30, 41, 200, 1000] {
            for _ in 0..20 {
                let mut v: Vec<u32> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % 50) as u32
                    })
                    .collect();
                let mut sorted = v.clone();
                sorted.sort();
                let r = (rng as usize) % len;
                pqsort(&mut v, 0, r, &|a, b| a.cmp(b));
                assert_eq!(v[..=r], sorted[..=r], "len {len}, first {}", r + 1);
            }
        }
    }

    #[test]
    fn equal_elements_move_as_in_redis() {
        // Nine equal distances (members a..i found in that order): Redis's GEOSEARCH ...
        // COUNT 3 answers i, b, c.
        let mut v: Vec<(u8, char)> = "abcdefghi".chars().map(|c| (0, c)).collect();
        pqsort(&mut v, 0, 2, &|a, b| a.0.cmp(&b.0));
        let names: String = v.iter().map(|(_, c)| c).collect();
        assert!(names.starts_with("ibc"), "{names}");
    }
}
