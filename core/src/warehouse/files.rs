//! Rows into Parquet files: one file per collection and UTC day (and event), named after the
//! range of positions it covers, with one typed Arrow column per row column. Pure: bytes in
//! memory, written to a folder by [`super::folder`].

use super::records::{Cell, Collection, Kind, Record, schema_of};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A file ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the warehouse root, with `/` separators.
    pub path: String,
    /// The table (folder name) it belongs to, e.g. `events` or `pages`.
    pub collection: String,
    /// Rows in it.
    pub rows: usize,
    /// The Parquet bytes.
    pub bytes: Vec<u8>,
}

/// The Arrow type of a column kind.
pub fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}

/// A part file's name: the first and last position of the range it covers, zero-padded so names
/// sort in log order. A batch redone after a crash covers the same range and gets the same name.
pub fn part_name(first: i64, last: i64) -> String {
    format!("part-{first:012}-{last:012}.parquet")
}

/// The positions a part file's name covers, if it is one.
pub fn parse_part_name(name: &str) -> Option<(i64, i64)> {
    let range = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Groups `records` into files: log rows are named after `log_range`, audience rows after
/// `audience_range` (the feed's own positions).
pub fn plan_files(
    records: &[Record],
    log_range: (i64, i64),
    audience_range: (i64, i64),
) -> Result<Vec<PlannedFile>, ParquetError> {
    let mut groups: BTreeMap<String, (&Collection, Vec<&Record>)> = BTreeMap::new();
    for r in records {
        groups
            .entry(r.collection.folder(&r.day))
            .or_insert_with(|| (&r.collection, Vec::new()))
            .1
            .push(r);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (folder, (collection, rows)) in groups {
        let (first, last) = if collection.is_audience() {
            audience_range
        } else {
            log_range
        };
        out.push(PlannedFile {
            path: format!("{folder}/{}", part_name(first, last)),
            collection: folder.split('/').next().unwrap_or_default().to_owned(),
            rows: rows.len(),
            bytes: encode(&rows)?,
        });
    }
    Ok(out)
}

/// The writer settings: zstd, dictionary pages (the default), statistics for pruning.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .build()
}

/// One Parquet file holding `rows`, with the union of their columns (absent values are null).
pub fn encode(rows: &[&Record]) -> Result<Vec<u8>, ParquetError> {
    let schema = schema_of(rows.iter().copied());
    let index: HashMap<&str, usize> = schema
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut cells: Vec<Vec<Option<&Cell>>> = vec![vec![None; rows.len()]; schema.len()];
    for (r, row) in rows.iter().enumerate() {
        for c in &row.cols {
            if let Some(&i) = index.get(c.name.as_str()) {
                cells[i][r] = Some(&c.cell);
            }
        }
    }
    let fields: Vec<Field> = schema
        .iter()
        .map(|(name, kind)| Field::new(name, arrow_type(*kind), true))
        .collect();
    let arrays: Vec<ArrayRef> = schema
        .iter()
        .zip(&cells)
        .map(|((_, kind), column)| array(*kind, column))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties()))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

/// One column as an Arrow array; a value of another type than the column's is converted (see
/// [`Cell::to_kind`]) or left null.
fn array(kind: Kind, column: &[Option<&Cell>]) -> ArrayRef {
    let value = |c: &Option<&Cell>| c.map_or(Cell::Null, |c| c.to_kind(kind));
    match kind {
        Kind::Text => {
            let mut b = StringBuilder::new();
            for c in column {
                match c {
                    // The common case, without a copy.
                    Some(Cell::Text(s)) => b.append_value(s),
                    None | Some(Cell::Null) => b.append_null(),
                    Some(other) => match other.to_kind(Kind::Text) {
                        Cell::Text(s) => b.append_value(s),
                        _ => b.append_null(),
                    },
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::with_capacity(column.len());
            for c in column {
                match value(c) {
                    Cell::Int(i) => b.append_value(i),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(column.len());
            for c in column {
                match value(c) {
                    Cell::Float(f) => b.append_value(f),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(column.len());
            for c in column {
                match value(c) {
                    Cell::Bool(v) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Time => {
            let mut b =
                TimestampMillisecondBuilder::with_capacity(column.len()).with_timezone("UTC");
            for c in column {
                match value(c) {
                    Cell::Time(t) => b.append_value(t),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::records::{LogRow, message_record};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;

    fn records() -> Vec<Record> {
        let plan =
            touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap();
        let bodies = [
            json!({"type": "track", "userId": "u1", "event": "trial_started",
                   "properties": {"plan_tier": "pro", "trial_days": 14}}),
            json!({"type": "track", "userId": "u2", "event": "trial_started",
                   "properties": {"plan_tier": "free", "trial_days": 7},
                   "context": {"campaign": {"source": "google"}}}),
            json!({"type": "page", "anonymousId": "a1", "properties": {"path": "/"}}),
        ];
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let row = LogRow {
                    seq: i as i64 + 1,
                    source: "web".into(),
                    message_id: format!("m{i}"),
                    event_time: 1_796_083_200_000 + i as i64,
                    received_at: 1_796_083_200_000,
                    profile_id: None,
                    body: b.to_string(),
                };
                message_record(&row, &plan, 0).unwrap()
            })
            .collect()
    }

    fn read(bytes: Vec<u8>) -> RecordBatch {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        batches.into_iter().next().unwrap()
    }

    #[test]
    fn part_names_carry_and_give_back_their_range() {
        assert_eq!(part_name(1, 250), "part-000000000001-000000000250.parquet");
        assert_eq!(parse_part_name(&part_name(1, 250)), Some((1, 250)));
        assert_eq!(parse_part_name(".part-1-2.parquet.tmp"), None);
    }

    #[test]
    fn rows_are_split_by_day_and_event_and_files_hold_typed_columns() {
        let files = plan_files(&records(), (1, 3), (0, 0)).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "events/date=2026-12-01/event=trial_started/part-000000000001-000000000003.parquet",
                "pages/date=2026-12-01/part-000000000001-000000000003.parquet",
            ]
        );
        assert_eq!(files[0].rows, 2);
        assert_eq!(files[0].collection, "events");
        let batch = read(files[0].bytes.clone());
        let schema = batch.schema();
        assert_eq!(
            schema.field_with_name("trial_days").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            schema.field_with_name("timestamp").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        let days = batch
            .column_by_name("trial_days")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!((days.value(0), days.value(1)), (14, 7));
        let source = batch
            .column_by_name("context_campaign_source")
            .unwrap()
            .as_string::<i32>();
        assert!(
            source.is_null(0),
            "a column only some rows have is null elsewhere"
        );
        assert_eq!(source.value(1), "google");
        let ts = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(1), 1_796_083_200_001);
    }

    #[test]
    fn the_same_rows_encode_to_the_same_bytes() {
        let a = plan_files(&records(), (1, 3), (0, 0)).unwrap();
        let b = plan_files(&records(), (1, 3), (0, 0)).unwrap();
        assert_eq!(a, b);
    }
}
