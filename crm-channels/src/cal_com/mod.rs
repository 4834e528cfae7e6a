//! Cal.com: a booking-link step and booking creation through API v2.
//!
//! - [`CalComBookingLinkChannel`] is a channel adapter for the `cal_com` sequence step:
//!   it puts the booking link into the message and delivers it through another adapter
//!   (email, WhatsApp, ...). Cal.com itself is not called; the booking arrives later
//!   through the Cal.com webhook (`crate::webhooks::cal_com`).
//! - [`CalComClient`] talks to `https://api.cal.com/v2`: `POST /bookings` and
//!   `GET /slots`, with `Authorization: Bearer <key>` and the `cal-api-version` header
//!   Cal.com requires. The version is configurable per endpoint
//!   ([`CalComConfig::bookings_api_version`], [`CalComConfig::slots_api_version`]) because
//!   Cal.com silently falls back to an older version when the header is missing or
//!   wrong, and has bumped it without notice.

mod bookings;
mod link;

pub use bookings::{
    Attendee, Booking, BookingRequest, CalComClient, CalComConfig, DEFAULT_BASE_URL,
    DEFAULT_BOOKINGS_API_VERSION, DEFAULT_SLOTS_API_VERSION, EventTypeRef, Slot, SlotsQuery,
};
pub use link::{BOOKING_LINK_PLACEHOLDER, CalComBookingLinkChannel};

const PROVIDER: &str = "cal-com";
