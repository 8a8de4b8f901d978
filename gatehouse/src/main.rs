//! The Gatehouse product binary.

fn main() {}
