//! Where samples come from: sources outside the impulse engine that produce
//! samples for the agent: scheduled jobs, and the StatsD and InfluxDB line
//! protocol listeners for application metrics.

pub mod jobs;
pub mod line_protocol;
pub mod listen;
pub mod statsd;
