//! Real-input FFTs with plans cached per thread.
//!
//! Planning an FFT costs far more than running a small one, and a game needs
//! the same few sizes over and over (every Welch segment, SPARC segments of
//! similar length), so plans are kept in a thread-local planner. The planner
//! only holds plans, never data, so the analysis stays a pure function.

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static PLANNER: RefCell<RealFftPlanner<f64>> = RefCell::new(RealFftPlanner::new());
}

/// A forward real FFT of one length with its buffers.
pub(crate) struct RealFft {
    plan: Arc<dyn RealToComplex<f64>>,
    scratch: Vec<Complex<f64>>,
    /// The `len / 2 + 1` output bins of the last [`RealFft::run`].
    pub(crate) spectrum: Vec<Complex<f64>>,
}

impl RealFft {
    pub(crate) fn new(len: usize) -> Self {
        let plan = PLANNER.with(|p| p.borrow_mut().plan_fft_forward(len));
        let scratch = plan.make_scratch_vec();
        let spectrum = plan.make_output_vec();
        RealFft {
            plan,
            scratch,
            spectrum,
        }
    }

    /// Transforms `input` (exactly the planned length; used as a buffer and
    /// left in an unspecified state).
    pub(crate) fn run(&mut self, input: &mut [f64]) {
        self.plan
            .process_with_scratch(input, &mut self.spectrum, &mut self.scratch)
            .expect("buffer lengths come from the plan itself");
    }
}
