//! Gatehouse proto.
