//! The tables as Parquet, through the `parquet` crate's typed column
//! writers (no Arrow: the rows are few types, and Arrow would double the
//! build).
//!
//! Rows are buffered column by column and written as one row group when
//! [`GAMES_PER_GROUP`] games or [`SAMPLES_PER_GROUP`] samples are
//! buffered, so the memory held is one row group's, whatever the number of
//! games. Pages are compressed with Snappy (the pure-Rust `snap` crate: no
//! C build, and every Parquet reader has it). Text columns are
//! dictionary-encoded (a `game_id` is repeated on every sample of its
//! game); numbers are not (their dictionaries would rarely pay).

use super::tables::{Column, Kind, Value};
use anyhow::Context;
use m2m_domain::GameSamples;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

/// Rows of `games` per row group.
pub(crate) const GAMES_PER_GROUP: usize = 4096;

/// Rows of `samples` per row group (at least one game's): about 2.5 MB of
/// buffered values per double column.
pub(crate) const SAMPLES_PER_GROUP: usize = 1 << 17;

/// One table being written.
pub(crate) struct ParquetTable {
    writer: SerializedFileWriter<BufWriter<File>>,
    buffers: Vec<Buffer>,
    rows: usize,
    rows_per_group: usize,
}

impl std::fmt::Debug for ParquetTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetTable")
            .field("columns", &self.buffers.len())
            .field("buffered_rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// A column's values until its row group is written.
struct Buffer {
    nullable: bool,
    /// Definition levels (1: a value, 0: null), for a nullable column only.
    defs: Vec<i16>,
    values: Values,
}

enum Values {
    Text(Vec<ByteArray>),
    Double(Vec<f64>),
    /// Integers, and times as microseconds since the Unix epoch.
    Int(Vec<i64>),
}

impl Buffer {
    fn clear(&mut self) {
        self.defs.clear();
        match &mut self.values {
            Values::Text(v) => v.clear(),
            Values::Double(v) => v.clear(),
            Values::Int(v) => v.clear(),
        }
    }
}

/// The Parquet schema of `columns` (names are validated identifiers: the
/// fixed ones, metric names from the metrics' JSON, channel names of
/// `a-z0-9_`).
fn message_type(table: &str, columns: &[Column]) -> String {
    let mut text = format!("message {table} {{\n");
    for c in columns {
        let repetition = if c.nullable { "optional" } else { "required" };
        let ty = match c.kind {
            Kind::Text => format!("binary {} (STRING)", c.name),
            Kind::Double => format!("double {}", c.name),
            Kind::Int => format!("int64 {}", c.name),
            Kind::Time => format!("int64 {} (TIMESTAMP(MICROS,true))", c.name),
        };
        text.push_str(&format!("  {repetition} {ty};\n"));
    }
    text.push('}');
    text
}

impl ParquetTable {
    /// A table named `table` of `columns`, written to `file`.
    pub(crate) fn new(
        file: File,
        table: &str,
        columns: &[Column],
        rows_per_group: usize,
    ) -> anyhow::Result<ParquetTable> {
        let schema = parse_message_type(&message_type(table, columns))
            .with_context(|| format!("the Parquet schema of {table}"))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_created_by(format!("m2m export {}", env!("CARGO_PKG_VERSION")));
        for c in columns.iter().filter(|c| c.kind == Kind::Text) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), true);
        }
        let writer = SerializedFileWriter::new(
            BufWriter::new(file),
            Arc::new(schema),
            Arc::new(props.build()),
        )?;
        let buffers = columns
            .iter()
            .map(|c| Buffer {
                nullable: c.nullable,
                defs: Vec::new(),
                values: match c.kind {
                    Kind::Text => Values::Text(Vec::new()),
                    Kind::Double => Values::Double(Vec::new()),
                    Kind::Int | Kind::Time => Values::Int(Vec::new()),
                },
            })
            .collect();
        Ok(ParquetTable {
            writer,
            buffers,
            rows: 0,
            rows_per_group,
        })
    }

    /// Adds one row (values in column order).
    pub(crate) fn push_row(&mut self, row: &[Value]) -> anyhow::Result<()> {
        anyhow::ensure!(
            row.len() == self.buffers.len(),
            "a row of {} values for {} columns",
            row.len(),
            self.buffers.len()
        );
        for (i, (buffer, value)) in self.buffers.iter_mut().zip(row).enumerate() {
            match (&mut buffer.values, value) {
                (_, Value::Null) => {
                    anyhow::ensure!(buffer.nullable, "a null in required column {i}");
                    buffer.defs.push(0);
                    continue;
                }
                (Values::Text(v), Value::Text(s)) => v.push(ByteArray::from(s.as_str())),
                (Values::Double(v), Value::Double(x)) => v.push(*x),
                (Values::Int(v), Value::Int(n)) => v.push(*n),
                (Values::Int(v), Value::Time(t)) => v.push(t.timestamp_micros()),
                (_, other) => anyhow::bail!("{other:?} in column {i} of another type"),
            }
            if buffer.nullable {
                buffer.defs.push(1);
            }
        }
        self.rows += 1;
        self.flush_when_full()
    }

    /// Adds the rows of one game's samples: `game_id`, `t` (i ÷ rate) and
    /// one value per channel of `channels` (the table's channel columns,
    /// in order), null where the game has no such channel.
    pub(crate) fn push_samples(
        &mut self,
        game_id: &str,
        samples: &GameSamples,
        channels: &[String],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.buffers.len() == channels.len() + 2,
            "a samples table of {} columns for {} channels",
            self.buffers.len(),
            channels.len()
        );
        let n = samples.channels.samples();
        let rate = samples.sample_rate_hz;
        let (head, columns) = self.buffers.split_at_mut(2);
        match &mut head[0].values {
            Values::Text(v) => v.extend(std::iter::repeat_n(ByteArray::from(game_id), n)),
            _ => anyhow::bail!("game_id is not a text column"),
        }
        match &mut head[1].values {
            Values::Double(v) => v.extend((0..n).map(|i| i as f64 / rate)),
            _ => anyhow::bail!("t is not a double column"),
        }
        for (buffer, name) in columns.iter_mut().zip(channels) {
            let Values::Double(v) = &mut buffer.values else {
                anyhow::bail!("channel {name} is not a double column");
            };
            match samples.channels.get(name) {
                Some(column) => {
                    v.extend_from_slice(column);
                    buffer.defs.extend(std::iter::repeat_n(1, n));
                }
                None => buffer.defs.extend(std::iter::repeat_n(0, n)),
            }
        }
        self.rows += n;
        self.flush_when_full()
    }

    fn flush_when_full(&mut self) -> anyhow::Result<()> {
        if self.rows >= self.rows_per_group {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for buffer in &mut self.buffers {
            let mut column = group
                .next_column()?
                .context("the schema has fewer columns than the rows")?;
            let defs = buffer.nullable.then_some(buffer.defs.as_slice());
            match &buffer.values {
                Values::Text(v) => column.typed::<ByteArrayType>().write_batch(v, defs, None)?,
                Values::Double(v) => column.typed::<DoubleType>().write_batch(v, defs, None)?,
                Values::Int(v) => column.typed::<Int64Type>().write_batch(v, defs, None)?,
            };
            column.close()?;
            buffer.clear();
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    /// Writes what is buffered and the footer, and flushes the file (the
    /// caller makes it durable and gives it its name).
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        let buffered = self.writer.into_inner()?;
        buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the table")?;
        Ok(())
    }
}
