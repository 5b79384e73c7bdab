//! The dashboard: server-rendered HTML with inline SVG plots and inline CSS,
//! no scripts and no external resources, so it works offline and in any
//! browser. Devices, samples, the lease queue, predictor quality, a
//! predicted-vs-measured scatter and a latency-accuracy Pareto plot per device,
//! which is also the device's search view: a budget form, the constraint
//! line, the chosen architecture with its bound, and the verified
//! candidates' measured latencies beside their predictions.
//!
//! | module | holds |
//! |---|---|
//! | [`fleet`] | `GET /`: one page of devices (`?page=&per_page=`) with aggregates from grouped queries, the lease queue, models |
//! | [`device`] | `GET /dashboard/devices/{id}`: one device, its predictors and its search view |
//! | [`plots`] | the SVG plots |
//! | [`html`] | the page frame, escaping and cell formats all pages share |

mod device;
mod fleet;
mod html;
mod plots;

pub use device::{SearchForm, device_page};
pub use fleet::{DEFAULT_PER_PAGE, FleetPage, MAX_PER_PAGE, PLOTTED_PER_PAGE, index};
pub use html::esc;
pub use plots::{SearchOverlay, pareto_front, pareto_svg, scatter_svg};
