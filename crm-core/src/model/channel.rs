//! Outreach channels.

use crate::text_enum::text_enum;

text_enum! {
    /// A channel a message or task goes out on.
    #[non_exhaustive]
    pub enum Channel {
        /// Email.
        Email = "email",
        /// WhatsApp (through Twilio).
        WhatsApp = "whatsapp",
        /// Instagram direct messages.
        Instagram = "instagram",
        /// LinkedIn: assisted, a person sends the drafted message.
        LinkedIn = "linkedin",
        /// A message carrying a Cal.com booking link.
        CalCom = "cal_com",
        /// Plain SMS (through a custom gateway).
        Sms = "sms",
        /// A task for a person (call, research); nothing is sent automatically.
        ManualTask = "manual_task",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_through_their_storage_names() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), *c);
            assert_eq!(
                serde_json::to_string(c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
