//! A stored game's samples, as the processor analyses them.

use crate::submission::Channels;

/// What the analysis of a stored game reads: its rate, its score and its
/// columns, exactly as the store keeps them. A store builds one with
/// [`Channels::from_stored`]; holding one means the columns have the shape
/// the analysis needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GameSamples {
    pub sample_rate_hz: f64,
    pub score: f64,
    pub channels: Channels,
}

impl GameSamples {
    /// Runs the analysis on the game.
    pub fn analyze(&self) -> m2m_analysis::Metrics {
        analyze(self.sample_rate_hz, self.score, &self.channels)
    }
}

pub(crate) fn analyze(
    sample_rate_hz: f64,
    score: f64,
    channels: &Channels,
) -> m2m_analysis::Metrics {
    m2m_analysis::analyze(&m2m_analysis::Recording {
        sample_rate_hz,
        samples: channels.samples(),
        score,
        channels,
    })
}
