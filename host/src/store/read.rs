//! What `komlogd query` reads, in one form for both ways of reading it: from the
//! store itself when no agent runs, or from a running agent, whose dispatcher owns
//! the store, over its control socket (`query {…}`). Both answer a
//! [`ReadRequest`] with [`read`], and the command line prints the [`ReadAnswer`]
//! the same way, so a running and a stopped agent give the same output.
//!
//! One request reads at most [`PAGE_ROWS`] samples and about [`PAGE_BYTES`] of
//! text, so a read holds the agent's dispatcher (and its ingestion) only
//! briefly; a client wanting more asks again for the samples before the oldest
//! one it got (`to`).

use super::{Store, StoreError, UriInfo};
use crate::model::{Sample, Value};

/// The most samples one request reads.
pub const PAGE_ROWS: usize = 1000;
/// After this much text, one request reads no further sample.
pub const PAGE_BYTES: usize = 4 << 20;

/// A read: every stored uri, or the newest samples of one uri.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadRequest {
    /// The uri's store key (a local uri, or `owner:uri`); none lists every
    /// stored uri.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// How many of the newest samples (at most [`PAGE_ROWS`] are read).
    #[serde(default)]
    pub limit: usize,
    /// Only samples at or after this time (µs since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Only samples at or before this time (µs since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
    /// Read the *oldest* samples, oldest first, instead of the newest, newest
    /// first: a client walking a uri forwards asks again from one past the
    /// last `ts` it got (`komlogd query --format`). An agent older than this
    /// field ignores it and answers newest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oldest_first: bool,
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadAnswer {
    /// Every stored uri, sorted, when no uri was asked for.
    #[serde(default)]
    pub uris: Vec<UriInfo>,
    /// The samples read, newest first.
    #[serde(default)]
    pub samples: Vec<Row>,
    /// Whether anything was ever stored at the uri asked for.
    #[serde(default)]
    pub known: bool,
    /// A failure of the request itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A sample as read. A number is carried as Rust prints it (the shortest text
/// that reads back as the same `f64`), so it crosses JSON exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The uri's store key.
    pub uri: String,
    /// µs since the Unix epoch.
    pub ts: i64,
    /// A datapoint's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoint: Option<String>,
    /// A datasource's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
}

impl From<Sample> for Row {
    fn from(s: Sample) -> Row {
        let (datapoint, datasource) = match s.value {
            Value::Datapoint(v) => (Some(v.to_string()), None),
            Value::Datasource(t) => (None, Some(t)),
        };
        Row {
            uri: s.uri,
            ts: s.ts,
            datapoint,
            datasource,
        }
    }
}

impl TryFrom<Row> for Sample {
    type Error = String;

    fn try_from(row: Row) -> Result<Sample, String> {
        let value = match (row.datapoint, row.datasource) {
            (Some(n), None) => Value::Datapoint(
                n.parse()
                    .map_err(|_| format!("{} at {}: not a number: {n:?}", row.uri, row.ts))?,
            ),
            (None, Some(t)) => Value::Datasource(t),
            _ => {
                return Err(format!(
                    "{} at {}: a row needs exactly one of `datapoint` and `datasource`",
                    row.uri, row.ts
                ));
            }
        };
        Ok(Sample {
            uri: row.uri,
            ts: row.ts,
            value,
        })
    }
}

/// Answer `req` from `store`.
pub fn read(store: &Store, req: &ReadRequest) -> Result<ReadAnswer, StoreError> {
    let Some(uri) = &req.uri else {
        return Ok(ReadAnswer {
            uris: store.uris()?,
            ..ReadAnswer::default()
        });
    };
    let limit = req.limit.min(PAGE_ROWS);
    let samples = if req.oldest_first {
        store.earliest_in(uri, req.from, req.to, limit, PAGE_BYTES)?
    } else {
        store.latest_in(uri, req.from, req.to, limit, PAGE_BYTES)?
    };
    Ok(ReadAnswer {
        samples: samples.into_iter().map(Row::from).collect(),
        known: store.kind_of(uri).is_some(),
        ..ReadAnswer::default()
    })
}

/// Everything `request` asks for, asking `page` (which answers one request as
/// [`read`] does, from a store or from a running agent) as often as needed: the
/// stored uris, or up to `request.limit` of the newest samples, newest first,
/// each page asking for the samples before the oldest one so far.
pub fn read_all<E>(
    mut request: ReadRequest,
    mut page: impl FnMut(&ReadRequest) -> Result<ReadAnswer, E>,
) -> Result<ReadAnswer, E> {
    let mut answer = page(&request)?;
    if request.uri.is_none() {
        return Ok(answer);
    }
    let limit = request.limit;
    let mut last_page = answer.samples.len();
    while last_page > 0 && answer.samples.len() < limit {
        let Some(before) = answer.samples.last().and_then(|r| r.ts.checked_sub(1)) else {
            break;
        };
        request.to = Some(before);
        request.limit = limit - answer.samples.len();
        let more = page(&request)?.samples;
        last_page = more.len();
        answer.samples.extend(more);
    }
    answer.samples.truncate(limit);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_cross_json_exactly() {
        for v in [0.1 + 0.2, -0.0, 1e-300, f64::MAX, 123_456.789_012_345_67] {
            let row = Row::from(Sample {
                uri: "x".into(),
                ts: 1,
                value: Value::Datapoint(v),
            });
            let back: Row = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
            let Ok(Sample {
                value: Value::Datapoint(w),
                ..
            }) = Sample::try_from(back)
            else {
                panic!("not a datapoint");
            };
            assert_eq!(v.to_bits(), w.to_bits());
        }
    }

    fn store_with(dir: &std::path::Path, samples: Vec<Sample>) -> Store {
        let mut store = Store::open(&dir.join("store.redb")).unwrap();
        store.append(&samples).unwrap();
        store
    }

    #[test]
    fn pages_add_up_to_the_limit_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let n = PAGE_ROWS as i64 * 2 + 500;
        let store = store_with(
            dir.path(),
            (0..n)
                .map(|ts| Sample::new("x", ts, Value::Datapoint(ts as f64)).unwrap())
                .collect(),
        );
        let mut pages = 0;
        let mut ask = |limit, from, to| {
            pages = 0;
            let req = ReadRequest {
                uri: Some("x".into()),
                limit,
                from,
                to,
                oldest_first: false,
            };
            read_all(req, |r| {
                pages += 1;
                read(&store, r)
            })
            .unwrap()
        };
        let answer = ask(2200, None, None);
        let ts: Vec<i64> = answer.samples.iter().map(|r| r.ts).collect();
        assert_eq!(ts, (n - 2200..n).rev().collect::<Vec<_>>());
        assert!(answer.known);
        let answer = ask(5000, Some(10), Some(1500));
        let ts: Vec<i64> = answer.samples.iter().map(|r| r.ts).collect();
        assert_eq!(ts, (10..=1500).rev().collect::<Vec<_>>());
        assert_eq!(ask(0, None, None).samples, []);
        // Oldest first, one page, within the bounds.
        let page = read(
            &store,
            &ReadRequest {
                uri: Some("x".into()),
                limit: 5000,
                from: Some(10),
                to: Some(1500),
                oldest_first: true,
            },
        )
        .unwrap();
        let ts: Vec<i64> = page.samples.iter().map(|r| r.ts).collect();
        assert_eq!(ts, (10..10 + PAGE_ROWS as i64).collect::<Vec<_>>());
        assert_eq!(ask(10, Some(5), Some(4)).samples, []);
        assert_eq!(pages, 1);
    }

    #[test]
    fn one_page_stops_after_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "a".repeat(crate::model::MAX_DATASOURCE_BYTES);
        let big = PAGE_BYTES / text.len() + 3;
        let store = store_with(
            dir.path(),
            (0..big as i64)
                .map(|ts| Sample::new("t", ts, Value::Datasource(text.clone())).unwrap())
                .collect(),
        );
        let req = ReadRequest {
            uri: Some("t".into()),
            limit: 100,
            ..ReadRequest::default()
        };
        let one = read(&store, &req).unwrap().samples.len();
        assert!(one < big, "{one} of {big}");
        assert_eq!(
            read_all(req, |r| read(&store, r)).unwrap().samples.len(),
            big
        );
    }

    #[test]
    fn a_malformed_row_is_an_error() {
        let row = |datapoint: Option<&str>, datasource: Option<&str>| Row {
            uri: "x".into(),
            ts: 1,
            datapoint: datapoint.map(str::to_owned),
            datasource: datasource.map(str::to_owned),
        };
        assert!(Sample::try_from(row(Some("nope"), None)).is_err());
        assert!(Sample::try_from(row(None, None)).is_err());
        assert!(Sample::try_from(row(Some("1"), Some("t"))).is_err());
    }
}
