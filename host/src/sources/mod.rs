//! Where samples come from: sources outside the impulse engine that produce
//! samples for the agent (scheduled jobs).

pub mod jobs;
