//! The router: which messages are delivered, how they are batched into turns, and what
//! history a turn carries. Pure functions here; the daemon's messaging actors do the I/O.

pub mod policy;
