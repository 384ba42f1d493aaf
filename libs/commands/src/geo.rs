//! Geo commands (GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH, GEOSEARCHSTORE, GEORADIUS,
//! GEORADIUSBYMEMBER and the `_RO` forms): typed forms, parsers and specs.
//!
//! A geo set is a sorted set whose scores are 52-bit geohashes (the storage node's
//! `data::geohash`). The searches' options are read at execution, after the source key's
//! type is checked and while its members can be looked up ([`GeoQuery::parse`]), because
//! Redis interleaves those lookups with its option parsing and orders its errors so.

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::{format_double_f, parse_double};
use crate::spec::{spec, Access, CommandSpec, Movable, ONE_KEY};

/// Latitude limits of a position (Web Mercator's).
pub const LAT_MIN: f64 = -85.05112878;
/// Latitude limits of a position (Web Mercator's).
pub const LAT_MAX: f64 = 85.05112878;
/// Longitude limits of a position.
pub const LONG_MIN: f64 = -180.0;
/// Longitude limits of a position.
pub const LONG_MAX: f64 = 180.0;

const G: &str = "geo";
const RW: Access = Access::Write;
const RO: Access = Access::Read;

/// Specs of the geo family.
pub static SPECS: &[CommandSpec] = &[
    spec("geoadd", -5, RW, &["write", "denyoom"], ONE_KEY, &["write", "geo", "slow"], G, "3.2.0", "Add one or more geospatial items in the geospatial index represented using a sorted set"),
    spec("geodist", -4, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "3.2.0", "Returns the distance between two members of a geospatial index"),
    spec("geohash", -2, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "3.2.0", "Returns members of a geospatial index as standard geohash strings"),
    spec("geopos", -2, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "3.2.0", "Returns longitude and latitude of members of a geospatial index"),
    spec("georadius", -6, RW, &["write", "denyoom", "movablekeys"], ONE_KEY, &["write", "geo", "slow"], G, "3.2.0", "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point").with_movable(Movable::GeoStore),
    spec("georadius_ro", -6, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "3.2.10", "A read-only variant for GEORADIUS"),
    spec("georadiusbymember", -5, RW, &["write", "denyoom", "movablekeys"], ONE_KEY, &["write", "geo", "slow"], G, "3.2.0", "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member").with_movable(Movable::GeoStore),
    spec("georadiusbymember_ro", -5, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "3.2.10", "A read-only variant for GEORADIUSBYMEMBER"),
    spec("geosearch", -7, RO, &["readonly"], ONE_KEY, &["read", "geo", "slow"], G, "6.2.0", "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle."),
    spec("geosearchstore", -8, RW, &["write", "denyoom"], (1, 2, 1), &["write", "geo", "slow"], G, "6.2.0", "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key."),
];

/// The destinations GEORADIUS or GEORADIUSBYMEMBER names: the argument after the first
/// STORE and the one after the first STOREDIST from the first option on (Redis's key specs,
/// so COMMAND GETKEYS answers as Redis), and the one after the last of them, which the
/// command writes (so routing and WATCH see it when STORE is given twice).
pub fn store_positions(argv: &[Bytes]) -> [Option<usize>; 3] {
    let by_member = argv
        .first()
        .is_some_and(|name| name.to_ascii_lowercase().starts_with(b"georadiusbymember"));
    let start = if by_member { 5 } else { 6 };
    let options = start..argv.len().saturating_sub(1);
    let is = |i: usize, word: &[u8]| argv[i].eq_ignore_ascii_case(word);
    let first = |word: &[u8]| options.clone().find(|&i| is(i, word)).map(|i| i + 1);
    let [store, dist] = [first(b"store"), first(b"storedist")];
    let last = options
        .clone()
        .rev()
        .find(|&i| is(i, b"store") || is(i, b"storedist"))
        .map(|i| i + 1)
        .filter(|&at| Some(at) != store && Some(at) != dist);
    [store, dist, last]
}

/// Which search command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// GEORADIUS and GEORADIUS_RO: `key longitude latitude radius unit ...`.
    Radius {
        /// The `_RO` form (no STORE).
        read_only: bool,
    },
    /// GEORADIUSBYMEMBER and its `_RO` form: `key member radius unit ...`.
    RadiusByMember {
        /// The `_RO` form (no STORE).
        read_only: bool,
    },
    /// GEOSEARCH: `key FROM... BY... ...`.
    Search,
    /// GEOSEARCHSTORE: `destination source FROM... BY... ...`.
    SearchStore,
}

/// A search as sent: parsed at execution by [`GeoQuery::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoSearch {
    /// Which command.
    pub kind: SearchKind,
    /// The command's name as sent (some errors quote it).
    pub name: Bytes,
    /// The arguments after the name.
    pub args: Vec<Bytes>,
}

impl GeoSearch {
    /// The key searched.
    pub fn source(&self) -> &Bytes {
        match self.kind {
            SearchKind::SearchStore => &self.args[1],
            _ => &self.args[0],
        }
    }
}

/// The area a search covers, in its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// A circle of this radius.
    Radius(f64),
    /// A box of this width and height.
    Box(f64, f64),
}

/// The order of a search's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// As found.
    None,
    /// Nearest first.
    Asc,
    /// Farthest first.
    Desc,
}

/// A search, its options read.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    /// The centre (longitude, latitude); `None` when the source key does not exist (a
    /// member could not be looked up).
    pub centre: Option<(f64, f64)>,
    /// The area.
    pub shape: Shape,
    /// Meters per unit.
    pub to_meters: f64,
    /// WITHDIST.
    pub with_dist: bool,
    /// WITHHASH.
    pub with_hash: bool,
    /// WITHCOORD.
    pub with_coord: bool,
    /// ASC/DESC (COUNT without ANY implies ASC).
    pub sort: SortOrder,
    /// COUNT (0: all).
    pub count: u64,
    /// ANY: stop at COUNT results found.
    pub any: bool,
    /// STORE/STOREDIST (GEORADIUS) or GEOSEARCHSTORE's destination, and whether distances
    /// are stored rather than geohashes.
    pub store: Option<(Bytes, bool)>,
}

/// Meters per unit: M, KM, FT, MI in any case.
pub fn unit(arg: &[u8]) -> Result<f64, CommandError> {
    Ok(match arg.to_ascii_lowercase().as_slice() {
        b"m" => 1.0,
        b"km" => 1000.0,
        b"ft" => 0.3048,
        b"mi" => 1609.34,
        _ => return Err(CommandError::GeoUnit),
    })
}

fn float(arg: &[u8], error: CommandError) -> Result<f64, CommandError> {
    parse_double(arg).ok_or(error)
}

/// A longitude and latitude argument pair, within the limits.
pub fn position(long: &[u8], lat: &[u8]) -> Result<(f64, f64), CommandError> {
    let long = float(long, CommandError::NotFloat)?;
    let lat = float(lat, CommandError::NotFloat)?;
    if !(LONG_MIN..=LONG_MAX).contains(&long) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(CommandError::GeoInvalidPosition(
            format_double_f(long, 6),
            format_double_f(lat, 6),
        ));
    }
    Ok((long, lat))
}

fn radius(value: &[u8], unit_arg: &[u8]) -> Result<(f64, f64), CommandError> {
    let r = float(value, CommandError::GeoNeedNumeric("radius"))?;
    if r < 0.0 {
        return Err(CommandError::GeoRadiusNegative);
    }
    Ok((r, unit(unit_arg)?))
}

impl GeoQuery {
    /// Reads a search's arguments as Redis does once the source key's type is checked:
    /// `member` looks a member's position up in the source (`None`: no such member),
    /// `source_exists` says whether there is a source at all.
    pub fn parse(
        search: &GeoSearch,
        source_exists: bool,
        mut member: impl FnMut(&[u8]) -> Option<(f64, f64)>,
    ) -> Result<GeoQuery, CommandError> {
        let args = &search.args;
        let mut q = GeoQuery {
            centre: None,
            shape: Shape::Radius(0.0),
            to_meters: 1.0,
            with_dist: false,
            with_hash: false,
            with_coord: false,
            sort: SortOrder::None,
            count: 0,
            any: false,
            store: None,
        };
        let mut lookup = |m: &[u8]| member(m).ok_or(CommandError::GeoMemberUnknown);
        let (base, geosearch, can_store) = match search.kind {
            SearchKind::Radius { read_only } => {
                q.centre = Some(position(&args[1], &args[2])?);
                let (r, to_meters) = radius(&args[3], &args[4])?;
                q.shape = Shape::Radius(r);
                q.to_meters = to_meters;
                (5, false, !read_only)
            }
            SearchKind::RadiusByMember { read_only } => {
                if source_exists {
                    q.centre = Some(lookup(&args[1])?);
                    let (r, to_meters) = radius(&args[2], &args[3])?;
                    q.shape = Shape::Radius(r);
                    q.to_meters = to_meters;
                }
                (4, false, !read_only)
            }
            SearchKind::Search => (1, true, false),
            SearchKind::SearchStore => {
                q.store = Some((args[0].clone(), false));
                (2, true, false)
            }
        };
        let store_search = search.kind == SearchKind::SearchStore;
        let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
            (false, false, false, false);
        let rest = &args[base..];
        let mut i = 0;
        while i < rest.len() {
            let left = rest.len() - i - 1;
            let word = rest[i].to_ascii_lowercase();
            match word.as_slice() {
                b"withdist" => q.with_dist = true,
                b"withhash" => q.with_hash = true,
                b"withcoord" => q.with_coord = true,
                b"any" => q.any = true,
                b"asc" => q.sort = SortOrder::Asc,
                b"desc" => q.sort = SortOrder::Desc,
                b"count" if left >= 1 => {
                    let n =
                        crate::number::parse_i64(&rest[i + 1]).ok_or(CommandError::NotInteger)?;
                    if n <= 0 {
                        return Err(CommandError::GeoCountNotPositive);
                    }
                    q.count = n as u64;
                    i += 1;
                }
                b"store" | b"storedist" if left >= 1 && can_store => {
                    q.store = Some((rest[i + 1].clone(), word == b"storedist"));
                    i += 1;
                }
                b"storedist" if store_search => {
                    if let Some((_, dist)) = &mut q.store {
                        *dist = true;
                    }
                }
                b"frommember" if left >= 1 && geosearch && !from_lonlat => {
                    if source_exists {
                        q.centre = Some(lookup(&rest[i + 1])?);
                    }
                    from_member = true;
                    i += 1;
                }
                b"fromlonlat" if left >= 2 && geosearch && !from_member => {
                    q.centre = Some(position(&rest[i + 1], &rest[i + 2])?);
                    from_lonlat = true;
                    i += 2;
                }
                b"byradius" if left >= 2 && geosearch && !by_box => {
                    let (r, to_meters) = radius(&rest[i + 1], &rest[i + 2])?;
                    q.shape = Shape::Radius(r);
                    q.to_meters = to_meters;
                    by_radius = true;
                    i += 2;
                }
                b"bybox" if left >= 3 && geosearch && !by_radius => {
                    let w = float(&rest[i + 1], CommandError::GeoNeedNumeric("width"))?;
                    let h = float(&rest[i + 2], CommandError::GeoNeedNumeric("height"))?;
                    if w < 0.0 || h < 0.0 {
                        return Err(CommandError::GeoBoxNegative);
                    }
                    q.to_meters = unit(&rest[i + 3])?;
                    q.shape = Shape::Box(w, h);
                    by_box = true;
                    i += 3;
                }
                _ => return Err(CommandError::Syntax),
            }
            i += 1;
        }
        if q.store.is_some() && (q.with_dist || q.with_hash || q.with_coord) {
            return Err(CommandError::GeoStoreWith(if store_search {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }));
        }
        let name = || String::from_utf8_lossy(&search.name).into_owned();
        if geosearch && !(from_member || from_lonlat) {
            return Err(CommandError::GeoNeedFrom(name()));
        }
        if geosearch && !(by_radius || by_box) {
            return Err(CommandError::GeoNeedBy(name()));
        }
        if q.any && q.count == 0 {
            return Err(CommandError::GeoAnyNeedsCount);
        }
        if q.count != 0 && q.sort == SortOrder::None && !q.any {
            q.sort = SortOrder::Asc;
        }
        Ok(q)
    }
}

/// A geo command that only reads.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoRead {
    /// `GEOPOS key [member ...]`
    Pos(Bytes, Vec<Bytes>),
    /// `GEOHASH key [member ...]`
    Hash(Bytes, Vec<Bytes>),
    /// `GEODIST key member1 member2 [unit]`: meters per unit.
    Dist(Bytes, Bytes, Bytes, f64),
    /// GEOSEARCH, GEORADIUS_RO, GEORADIUSBYMEMBER_RO.
    Search(GeoSearch),
}

/// A geo command that writes.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoWrite {
    /// `GEOADD key [NX|XX] [CH] longitude latitude member ...`
    Add {
        /// The key.
        key: Bytes,
        /// NX.
        nx: bool,
        /// XX.
        xx: bool,
        /// CH.
        ch: bool,
        /// (longitude, latitude, member) triples.
        points: Vec<(f64, f64, Bytes)>,
    },
    /// GEORADIUS, GEORADIUSBYMEMBER (which may STORE) and GEOSEARCHSTORE.
    Search(GeoSearch),
}

/// A typed geo command.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoCommand {
    /// Reads.
    Read(GeoRead),
    /// Writes.
    Write(GeoWrite),
}

impl GeoCommand {
    /// Parses a geo command: `name` lower case (arity checked), `sent` the name as the
    /// client spelled it.
    pub fn parse(name: &str, sent: &Bytes, args: &[Bytes]) -> Result<Self, CommandError> {
        let search = |kind| GeoSearch {
            kind,
            name: sent.clone(),
            args: args.to_vec(),
        };
        Ok(match name {
            "geoadd" => {
                let (mut nx, mut xx, mut ch) = (false, false, false);
                let mut at = 1;
                while at < args.len() {
                    match args[at].to_ascii_lowercase().as_slice() {
                        b"nx" => nx = true,
                        b"xx" => xx = true,
                        b"ch" => ch = true,
                        _ => break,
                    }
                    at += 1;
                }
                let rest = &args[at..];
                if !rest.len().is_multiple_of(3) || (nx && xx) || rest.is_empty() {
                    return Err(CommandError::Syntax);
                }
                let mut points = Vec::with_capacity(rest.len() / 3);
                for t in rest.chunks(3) {
                    let (long, lat) = position(&t[0], &t[1])?;
                    points.push((long, lat, t[2].clone()));
                }
                GeoCommand::Write(GeoWrite::Add {
                    key: args[0].clone(),
                    nx,
                    xx,
                    ch,
                    points,
                })
            }
            "geopos" => GeoCommand::Read(GeoRead::Pos(args[0].clone(), args[1..].to_vec())),
            "geohash" => GeoCommand::Read(GeoRead::Hash(args[0].clone(), args[1..].to_vec())),
            "geodist" => {
                let to_meters = match args.len() {
                    3 => 1.0,
                    4 => unit(&args[3])?,
                    _ => return Err(CommandError::Syntax),
                };
                GeoCommand::Read(GeoRead::Dist(
                    args[0].clone(),
                    args[1].clone(),
                    args[2].clone(),
                    to_meters,
                ))
            }
            "georadius" => GeoCommand::Write(GeoWrite::Search(search(SearchKind::Radius {
                read_only: false,
            }))),
            "georadius_ro" => GeoCommand::Read(GeoRead::Search(search(SearchKind::Radius {
                read_only: true,
            }))),
            "georadiusbymember" => {
                GeoCommand::Write(GeoWrite::Search(search(SearchKind::RadiusByMember {
                    read_only: false,
                })))
            }
            "georadiusbymember_ro" => {
                GeoCommand::Read(GeoRead::Search(search(SearchKind::RadiusByMember {
                    read_only: true,
                })))
            }
            "geosearch" => GeoCommand::Read(GeoRead::Search(search(SearchKind::Search))),
            "geosearchstore" => {
                GeoCommand::Write(GeoWrite::Search(search(SearchKind::SearchStore)))
            }
            _ => unreachable!("geo family dispatched an unknown name: {name}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn store_keys_as_redis_finds_them_and_the_one_written() {
        let a = argv("georadius k 1 2 3 m store a storedist b");
        assert_eq!(store_positions(&a), [Some(7), Some(9), None]);
        let a = argv("georadius k 1 2 3 m STORE a STORE c");
        assert_eq!(store_positions(&a), [Some(7), None, Some(9)]);
        let a = argv("georadiusbymember k m 3 m storedist x");
        assert_eq!(store_positions(&a), [None, Some(6), None]);
        assert_eq!(store_positions(&argv("georadius k 1 2 3 m")), [None; 3]);
        assert_eq!(
            store_positions(&argv("georadius k 1 2 3 m store")),
            [None; 3]
        );
    }
}
