//! Pre-upgrade validation (issue "Pre-upgrade validation"): taking a cluster from one driver to
//! another through the operator's upgrade controller, watching every node's state, and judging
//! what happened. So far: the pure judgement of a watched timeline ([`timeline`]); the command,
//! the watch and the simulator's controller come next.

pub mod timeline;
