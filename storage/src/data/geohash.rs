//! Redis's geohash arithmetic: positions as 52-bit interleaved cells (the scores of a geo
//! sorted set), cells back to positions, distances, and the nine cells a search scans.
//!
//! A position is encoded on 26 steps per axis: latitude within ±85.05112878 (Web
//! Mercator's limit), longitude within ±180, each scaled to 0..2^26 and truncated, the
//! latitude's bits at even positions and the longitude's at odd ones. A score decodes to
//! the centre of its cell, which is what GEOPOS answers. Distances are haversine on a
//! sphere of radius 6372797.560856 m. Everything here follows Redis 7.0's `geohash.c` and
//! `geohash_helper.c` step by step, so that the cells scanned, the members found, their
//! order and every figure printed are Redis's.

/// Steps (bits per axis) of a stored position.
pub const STEP_MAX: u8 = 26;
use zankv_commands::geo::{Shape, LAT_MAX, LAT_MIN, LONG_MAX, LONG_MIN};
use zankv_commands::number::c_i64;
const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;

/// A cell: its bits and how many steps (bits per axis) it has. All zero: no cell (a
/// neighbour a search leaves out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell {
    /// Interleaved bits, 2 × `step` of them.
    pub bits: u64,
    /// Bits per axis.
    pub step: u8,
}

impl Cell {
    fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The scores of this cell's positions: `[min, max)`.
    pub fn score_range(self) -> (u64, u64) {
        let shift = 52 - u32::from(self.step) * 2;
        (self.bits << shift, (self.bits + 1) << shift)
    }
}

/// Bounds of a cell.
#[derive(Debug, Clone, Copy, Default)]
struct Area {
    lat: (f64, f64),
    long: (f64, f64),
}

fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    x = (x | (x >> 16)) & 0x0000_0000_ffff_ffff;
    x as u32
}

/// The cell of `step` steps holding (`long`, `lat`) within the latitude range `lat_range`,
/// or `None` outside the encodable limits.
fn encode_in(long: f64, lat: f64, step: u8, lat_range: (f64, f64)) -> Option<Cell> {
    if !(LONG_MIN..=LONG_MAX).contains(&long) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
    let long_offset = (long - LONG_MIN) / (LONG_MAX - LONG_MIN) * scale;
    Some(Cell {
        bits: spread(lat_offset as u32) | (spread(long_offset as u32) << 1),
        step,
    })
}

/// The cell of `step` steps holding a position.
pub fn encode(long: f64, lat: f64, step: u8) -> Option<Cell> {
    encode_in(long, lat, step, (LAT_MIN, LAT_MAX))
}

/// The score GEOADD stores for a position (`None` outside the limits).
pub fn score_of(long: f64, lat: f64) -> Option<u64> {
    encode(long, lat, STEP_MAX).map(|c| c.bits)
}

fn decode_area(cell: Cell) -> Area {
    let scale = (1u64 << cell.step) as f64;
    let lat = squash(cell.bits);
    let long = squash(cell.bits >> 1);
    let (lat_span, long_span) = (LAT_MAX - LAT_MIN, LONG_MAX - LONG_MIN);
    Area {
        lat: (
            LAT_MIN + (f64::from(lat) / scale) * lat_span,
            LAT_MIN + (f64::from(lat.wrapping_add(1)) / scale) * lat_span,
        ),
        long: (
            LONG_MIN + (f64::from(long) / scale) * long_span,
            LONG_MIN + (f64::from(long.wrapping_add(1)) / scale) * long_span,
        ),
    }
}

/// C's `(uint64_t)` of a double as x86-64 compilers emit it: below 2^63 a signed
/// conversion (so a negative score wraps), above it a signed one of `x - 2^63` with the
/// top bit flipped. Redis decodes any sorted-set score so, whatever a ZADD put there.
fn c_u64(x: f64) -> u64 {
    const TWO_63: f64 = (1u64 << 63) as f64;
    if x < TWO_63 {
        c_i64(x) as u64
    } else {
        (c_i64(x - TWO_63) as u64) ^ (1 << 63)
    }
}

/// The position (longitude, latitude) a score stands for: its cell's centre.
pub fn position_of(score: f64) -> (f64, f64) {
    let area = decode_area(Cell {
        bits: c_u64(score),
        step: STEP_MAX,
    });
    let long = ((area.long.0 + area.long.1) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.lat.0 + area.lat.1) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (long, lat)
}

/// GEOHASH's 11-character standard geohash of a score (re-encoded with latitudes ±90).
pub fn geohash_string(score: f64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (long, lat) = position_of(score);
    let bits = encode_in(long, lat, STEP_MAX, (-90.0, 90.0)).map_or(0, |c| c.bits);
    (0..11)
        .map(|i| {
            let index = if i == 10 {
                0
            } else {
                (bits >> (52 - (i + 1) * 5)) & 0x1f
            };
            char::from(ALPHABET[index as usize])
        })
        .collect()
}

fn rad(degrees: f64) -> f64 {
    degrees * (std::f64::consts::PI / 180.0)
}

fn deg(radians: f64) -> f64 {
    radians / (std::f64::consts::PI / 180.0)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (rad(lat2) - rad(lat1)).abs()
}

/// The distance in meters between two positions.
pub fn distance(long1: f64, lat1: f64, long2: f64, lat2: f64) -> f64 {
    let v = ((rad(long2) - rad(long1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (rad(lat1), rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// A search: its centre, shape and unit (meters per unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    /// Centre longitude.
    pub long: f64,
    /// Centre latitude.
    pub lat: f64,
    /// The shape in the search's unit.
    pub shape: Shape,
    /// Meters per unit.
    pub to_meters: f64,
}

impl Search {
    /// The distance (meters) from the centre to a position within the shape, or `None`
    /// when it is outside.
    pub fn distance_if_within(&self, long: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.long, self.lat, long, lat);
                (d <= r * self.to_meters).then_some(d)
            }
            Shape::Box(w, h) => {
                let (w, h) = (w * self.to_meters, h * self.to_meters);
                if lat_distance(lat, self.lat) > h / 2.0 {
                    return None;
                }
                if distance(long, lat, self.long, lat) > w / 2.0 {
                    return None;
                }
                Some(distance(self.long, self.lat, long, lat))
            }
        }
    }

    /// The bounding box (min long, min lat, max long, max lat).
    fn bounds(&self) -> [f64; 4] {
        let (half_h, half_w) = match self.shape {
            Shape::Radius(r) => (r, r),
            Shape::Box(w, h) => (h / 2.0, w / 2.0),
        };
        let (height, width) = (half_h * self.to_meters, half_w * self.to_meters);
        let lat_delta = deg(height / EARTH_RADIUS_M);
        let long_delta_top = deg(width / EARTH_RADIUS_M / rad(self.lat + lat_delta).cos());
        let long_delta_bottom = deg(width / EARTH_RADIUS_M / rad(self.lat - lat_delta).cos());
        let long_delta = if self.lat < 0.0 {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            self.long - long_delta,
            self.lat - lat_delta,
            self.long + long_delta,
            self.lat + lat_delta,
        ]
    }

    /// The cells to scan, in Redis's order (the centre's, then north, south, east, west,
    /// north-east, north-west, south-east, south-west), without the ones the search cannot
    /// reach, and without a cell equal to the one scanned just before it (as Redis skips
    /// them, except right after the centre).
    pub fn cells(&self) -> Vec<Cell> {
        let [min_long, min_lat, max_long, max_lat] = self.bounds();
        let radius = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box(w, h) => ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
        } * self.to_meters;
        let mut step = estimate_steps(radius, self.lat);
        let mut centre = encode(self.long, self.lat, step).unwrap_or_default();
        let mut n = neighbours(centre);
        let [north, south, east, west] = [n[1], n[2], n[3], n[4]].map(decode_area);
        let decrease = north.lat.1 < max_lat
            || south.lat.0 > min_lat
            || east.long.1 < max_long
            || west.long.0 > min_long;
        if step > 1 && decrease {
            step -= 1;
            centre = encode(self.long, self.lat, step).unwrap_or_default();
            n = neighbours(centre);
        }
        let area = decode_area(centre);
        // n: [centre, N, S, E, W, NE, NW, SE, SW]
        if step >= 2 {
            let mut drop =
                |indexes: [usize; 3]| indexes.iter().for_each(|&i| n[i] = Cell::default());
            if area.lat.0 < min_lat {
                drop([2, 8, 7]);
            }
            if area.lat.1 > max_lat {
                drop([1, 5, 6]);
            }
            if area.long.0 < min_long {
                drop([4, 8, 6]);
            }
            if area.long.1 > max_long {
                drop([3, 7, 5]);
            }
        }
        let mut out = Vec::with_capacity(9);
        let mut last: Option<usize> = None;
        for i in 0..9 {
            if n[i].is_zero() {
                continue;
            }
            if let Some(l) = last.filter(|&l| l > 0) {
                if n[i] == n[l] {
                    continue;
                }
            }
            out.push(n[i]);
            last = Some(i);
        }
        out
    }
}

fn estimate_steps(range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return 26;
    }
    let mut range = range_m;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

const LONG_BITS: u64 = 0xaaaa_aaaa_aaaa_aaaa;
const LAT_BITS: u64 = 0x5555_5555_5555_5555;

/// Moves a cell one cell along the axis whose bits `axis` selects (`LONG_BITS` east/west,
/// `LAT_BITS` north/south), `d` = ±1, wrapping around.
fn shift(cell: Cell, axis: u64, d: i8) -> Cell {
    let width = 64 - u32::from(cell.step) * 2;
    let moving = cell.bits & axis;
    let kept = cell.bits & !axis;
    // The other axis's bits, within the cell's width: adding one past them carries into
    // the next bit of this axis.
    let zz = !axis >> width;
    let moved = if d > 0 {
        moving.wrapping_add(zz + 1)
    } else {
        (moving | zz).wrapping_sub(zz + 1)
    } & (axis >> width);
    Cell {
        bits: moved | kept,
        step: cell.step,
    }
}

fn move_x(cell: Cell, d: i8) -> Cell {
    shift(cell, LONG_BITS, d)
}

fn move_y(cell: Cell, d: i8) -> Cell {
    shift(cell, LAT_BITS, d)
}

/// The cell and its eight neighbours: [centre, N, S, E, W, NE, NW, SE, SW].
fn neighbours(c: Cell) -> [Cell; 9] {
    [
        c,
        move_y(c, 1),
        move_y(c, -1),
        move_x(c, 1),
        move_x(c, -1),
        move_y(move_x(c, 1), 1),
        move_y(move_x(c, -1), 1),
        move_y(move_x(c, 1), -1),
        move_y(move_x(c, -1), -1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_commands::reply::human_coordinate as human;

    #[test]
    fn palermo_and_catania_as_in_redis_docs() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" 15.087269 37.502669 "Catania"
        let palermo = score_of(13.361389, 38.115556).unwrap();
        let catania = score_of(15.087269, 37.502669).unwrap();
        assert_eq!(palermo, 3479099956230698);
        assert_eq!(catania, 3479447370796909);
        let (p, c) = (position_of(palermo as f64), position_of(catania as f64));
        assert_eq!(human(p.0), "13.36138933897018433");
        assert_eq!(human(p.1), "38.11555639549629859");
        // GEODIST Sicily Palermo Catania → "166274.1516"; in km "166.2742".
        let d = distance(p.0, p.1, c.0, c.1);
        assert_eq!(format!("{d:.4}"), "166274.1516");
        assert_eq!(format!("{:.4}", d / 1000.0), "166.2742");
        assert_eq!(geohash_string(palermo as f64), "sqc8b49rny0");
        assert_eq!(geohash_string(catania as f64), "sqdtr74hyu0");
    }

    #[test]
    fn scores_convert_as_c_does() {
        assert_eq!(c_u64(-5.0), (-5i64) as u64);
        assert_eq!(c_u64(1e20), 0);
        assert_eq!(c_u64(9.3e18), 9_300_000_000_000_000_000);
        assert_eq!(c_i64(1e19), i64::MIN);
        assert_eq!(c_i64(-3.7), -3);
    }

    #[test]
    fn limits_and_interleaving() {
        assert_eq!(score_of(180.1, 0.0), None);
        assert_eq!(score_of(0.0, 85.06), None);
        for v in [0u32, 1, 0x3ff_ffff, 0xdead_beef] {
            assert_eq!(squash(spread(v)), v);
        }
        // Moving east then west returns to the same cell.
        let c = encode(10.0, 20.0, 12).unwrap();
        assert_eq!(move_x(move_x(c, 1), -1), c);
        assert_eq!(move_y(move_y(c, -1), 1), c);
    }
}
