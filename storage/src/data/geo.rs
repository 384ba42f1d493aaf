//! Execution of geo commands on sorted sets whose scores are geohashes ([`geohash`]).
//!
//! GEOADD is ZADD of the encoded positions. A search reads its options once the source's
//! type is checked ([`GeoQuery::parse`]), scans the index over the score ranges of the
//! cells [`Search::cells`] names, in Redis's order, keeps the members within the shape
//! (stopping at COUNT with ANY), sorts them by distance when asked, and either replies or
//! (STORE, STOREDIST, GEOSEARCHSTORE) replaces the destination with a sorted set of them.

use bytes::Bytes;
use zankv_commands::geo::{GeoQuery, GeoRead, GeoSearch, GeoWrite, SearchKind, SortOrder};
use zankv_commands::number::{c_i64, format_double_f};
use zankv_commands::zset::AddFlags;
use zankv_commands::{notify, Reply};

use super::geohash::{self, Search};
use super::pqsort::pqsort;
use super::zset::{self, Entry};
use super::{ExecError, ExecResult, ReadCtx, Txn, View};
use crate::engine::{EngineError, Flow};

/// A member found by a search.
struct Point {
    member: Bytes,
    score: f64,
    long: f64,
    lat: f64,
    /// Meters from the centre.
    dist: f64,
}

/// A search's options and what it found: `None` when the source does not exist.
struct Found {
    query: GeoQuery,
    points: Option<Vec<Point>>,
}

fn distance_reply(meters: f64, to_meters: f64) -> Reply {
    Reply::bulk(format_double_f(meters / to_meters, 4))
}

fn coordinates(long: f64, lat: f64) -> Reply {
    Reply::Array(vec![Reply::Coordinate(long), Reply::Coordinate(lat)])
}

/// The search of source `z`: its options read, then the members found.
fn run_search(
    view: &(impl View + ?Sized),
    z: Option<zset::Shape>,
    search: &GeoSearch,
) -> Result<Found, ExecError> {
    let mut failure: Option<EngineError> = None;
    let query = GeoQuery::parse(search, z.is_some(), |member| {
        let z = z.as_ref()?;
        match zset::score_of(view, z, member) {
            Ok(score) => score.map(geohash::position_of),
            Err(e) => {
                failure.get_or_insert(e);
                None
            }
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    let query = query?;
    let (Some(z), Some((long, lat))) = (z, query.centre) else {
        return Ok(Found {
            query,
            points: None,
        });
    };
    let area = Search {
        long,
        lat,
        shape: query.shape,
        to_meters: query.to_meters,
    };
    let limit = if query.any { query.count } else { 0 };
    let full = |points: &Vec<Point>| limit > 0 && points.len() as u64 >= limit;
    let mut points = Vec::new();
    let ranges: Vec<(f64, f64)> = area
        .cells()
        .into_iter()
        .map(|cell| {
            let (min, max) = cell.score_range();
            (min as f64, max as f64)
        })
        .collect();
    zset::walk_ranges(view, &z, &ranges, &mut |score, member| {
        let (plong, plat) = geohash::position_of(score);
        if let Some(dist) = area.distance_if_within(plong, plat) {
            points.push(Point {
                member: Bytes::copy_from_slice(member),
                score,
                long: plong,
                lat: plat,
                dist,
            });
        }
        if full(&points) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    })?;
    let returned = match usize::try_from(query.count) {
        Ok(count) if count > 0 => count.min(points.len()),
        _ => points.len(),
    };
    let by_distance = |a: &Point, b: &Point| a.dist.total_cmp(&b.dist);
    let cmp = |a: &Point, b: &Point| match query.sort {
        SortOrder::Desc => by_distance(b, a),
        _ => by_distance(a, b),
    };
    if query.sort != SortOrder::None {
        // As Redis: a full sort (the C library's, a stable merge sort here) when every
        // member found is returned, else its partial quicksort, whose order of equally
        // distant members is its own.
        if returned == points.len() {
            points.sort_by(cmp);
        } else if returned > 0 {
            pqsort(&mut points, 0, returned - 1, &cmp);
        }
    }
    points.truncate(returned);
    Ok(Found {
        query,
        points: Some(points),
    })
}

/// A search's reply to the client (no STORE).
fn search_reply(found: Found) -> Reply {
    let Found { query: q, points } = found;
    let points = points.unwrap_or_default();
    let with = q.with_dist || q.with_hash || q.with_coord;
    Reply::Array(
        points
            .into_iter()
            .map(|p| {
                if !with {
                    return Reply::Bulk(p.member);
                }
                let mut item = vec![Reply::Bulk(p.member)];
                if q.with_dist {
                    item.push(distance_reply(p.dist, q.to_meters));
                }
                if q.with_hash {
                    item.push(Reply::Integer(c_i64(p.score)));
                }
                if q.with_coord {
                    item.push(coordinates(p.long, p.lat));
                }
                Reply::Array(item)
            })
            .collect(),
    )
}

/// Executes a geo command that only reads.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &GeoRead) -> ExecResult {
    let view = ctx.view;
    let shape = |key: &[u8]| zset::shape_at(view, key, ctx.now_ms);
    match cmd {
        GeoRead::Pos(key, members) | GeoRead::Hash(key, members) => {
            let z = shape(key)?;
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                let score = match &z {
                    Some(z) => zset::score_of(view, z, member)?,
                    None => None,
                };
                out.push(match (cmd, score) {
                    (GeoRead::Pos(..), None) => Reply::NilArray,
                    (GeoRead::Pos(..), Some(s)) => {
                        let (long, lat) = geohash::position_of(s);
                        coordinates(long, lat)
                    }
                    (_, None) => Reply::Nil,
                    (_, Some(s)) => Reply::bulk(geohash::geohash_string(s)),
                });
            }
            Ok(Reply::Array(out))
        }
        GeoRead::Dist(key, a, b, to_meters) => {
            let Some(z) = shape(key)? else {
                return Ok(Reply::Nil);
            };
            match (zset::score_of(view, &z, a)?, zset::score_of(view, &z, b)?) {
                (Some(sa), Some(sb)) => {
                    let (pa, pb) = (geohash::position_of(sa), geohash::position_of(sb));
                    let meters = geohash::distance(pa.0, pa.1, pb.0, pb.1);
                    Ok(distance_reply(meters, *to_meters))
                }
                _ => Ok(Reply::Nil),
            }
        }
        GeoRead::Search(search) => {
            let z = zset::shape_at(view, search.source(), ctx.now_ms)?;
            Ok(search_reply(run_search(view, z, search)?))
        }
    }
}

/// Executes a geo command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &GeoWrite) -> ExecResult {
    match cmd {
        GeoWrite::Add {
            key,
            nx,
            xx,
            ch,
            points,
        } => {
            let pairs: Vec<Entry> = points
                .iter()
                .map(|(long, lat, member)| {
                    // Parsing checked the limits, so the position always encodes.
                    let score = geohash::score_of(*long, *lat).unwrap_or(0);
                    (score as f64, member.clone())
                })
                .collect();
            let flags = AddFlags {
                nx: *nx,
                xx: *xx,
                ch: *ch,
                ..AddFlags::default()
            };
            zset::add(txn, key, &flags, &pairs)
        }
        GeoWrite::Search(search) => {
            let z = zset::shape_at(&*txn, search.source(), txn.now_ms)?;
            if z.is_none() {
                // Announced as Redis's lookup does, before any error of the options.
                txn.notify(notify::KEY_MISS, "keymiss", search.source());
            }
            let found = run_search(&*txn, z, search)?;
            let Some((dest, store_dist)) = found.query.store.clone() else {
                return Ok(search_reply(found));
            };
            let to_meters = found.query.to_meters;
            let entries: Vec<Entry> = found
                .points
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let score = if store_dist {
                        p.dist / to_meters
                    } else {
                        p.score
                    };
                    (score, p.member)
                })
                .collect();
            let event = if search.kind == SearchKind::SearchStore {
                "geosearchstore"
            } else {
                "georadiusstore"
            };
            Ok(Reply::Integer(
                zset::store_zset(txn, &dest, &entries, event)? as i64,
            ))
        }
    }
}
