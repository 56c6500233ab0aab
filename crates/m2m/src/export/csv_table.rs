//! The tables as CSV (RFC 4180, through the `csv` crate): a header of
//! column names, then one record per row. A null is an empty field;
//! doubles are written in their shortest form that reads back to the same
//! value (`ryu`); times as RFC 3339 in UTC with six decimals
//! (`2026-11-27T10:00:00.123456Z`).

use super::tables::{Column, Value};
use anyhow::Context;
use m2m_domain::GameSamples;
use std::fs::File;
use std::io::BufWriter;

/// How times are written.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// One table being written.
pub(crate) struct CsvTable {
    writer: csv::Writer<BufWriter<File>>,
    columns: usize,
    /// Scratch space for formatting a double.
    number: ryu::Buffer,
}

impl std::fmt::Debug for CsvTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvTable")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl CsvTable {
    /// A table of `columns`, written to `file` from its header on.
    pub(crate) fn new(file: File, columns: &[Column]) -> anyhow::Result<CsvTable> {
        let mut writer = csv::WriterBuilder::new()
            .flexible(false)
            .from_writer(BufWriter::new(file));
        writer.write_record(columns.iter().map(|c| c.name.as_str()))?;
        Ok(CsvTable {
            writer,
            columns: columns.len(),
            number: ryu::Buffer::new(),
        })
    }

    /// Adds one row (values in column order).
    pub(crate) fn push_row(&mut self, row: &[Value]) -> anyhow::Result<()> {
        anyhow::ensure!(
            row.len() == self.columns,
            "a row of {} values for {} columns",
            row.len(),
            self.columns
        );
        for value in row {
            match value {
                Value::Null => self.writer.write_field("")?,
                Value::Text(s) => self.writer.write_field(s)?,
                Value::Double(x) => self.writer.write_field(self.number.format(*x))?,
                Value::Int(n) => self.writer.write_field(n.to_string())?,
                Value::Time(t) => self.writer.write_field(t.format(TIME_FORMAT).to_string())?,
            }
        }
        self.writer.write_record(None::<&[u8]>)?;
        Ok(())
    }

    /// Adds the rows of one game's samples (as
    /// [`ParquetTable::push_samples`](super::parquet_table::ParquetTable::push_samples)).
    pub(crate) fn push_samples(
        &mut self,
        game_id: &str,
        samples: &GameSamples,
        channels: &[String],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.columns == channels.len() + 2,
            "a samples table of {} columns for {} channels",
            self.columns,
            channels.len()
        );
        let columns: Vec<Option<&[f64]>> = channels
            .iter()
            .map(|name| samples.channels.get(name))
            .collect();
        let rate = samples.sample_rate_hz;
        for i in 0..samples.channels.samples() {
            self.writer.write_field(game_id)?;
            self.writer
                .write_field(self.number.format(i as f64 / rate))?;
            for column in &columns {
                match column {
                    Some(values) => self.writer.write_field(self.number.format(values[i]))?,
                    None => self.writer.write_field("")?,
                }
            }
            self.writer.write_record(None::<&[u8]>)?;
        }
        Ok(())
    }

    /// Flushes the table to its file (the caller makes it durable and
    /// gives it its name).
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        let buffered = self
            .writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write the table: {}", e.error()))?;
        buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the table")?;
        Ok(())
    }
}
