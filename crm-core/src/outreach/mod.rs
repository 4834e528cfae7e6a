//! The outreach engine: sequences, enrollments and the path to the outbox.
//!
//! Pure parts ([`template`], [`schedule`], [`enrollment`]) are functions of their
//! arguments; services ([`dispatch`], [`approvals`], [`runner`], [`enroll`], [`control`],
//! [`inbound`], [`forecast`]) load from a [`Store`](crate::Store), apply them and write
//! back atomically.

pub mod approvals;
pub mod control;
pub mod dispatch;
pub mod enroll;
pub mod enrollment;
pub mod forecast;
pub mod inbound;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod template;
