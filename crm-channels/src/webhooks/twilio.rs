//! Twilio webhooks: `X-Twilio-Signature` and WhatsApp messaging events.
//!
//! The signed string is the full URL Twilio called, exactly as configured, followed by
//! every POST parameter sorted by name (repeated names sorted by value) as `name + value`
//! without separators; HMAC-SHA1 with the Auth Token, base64. As Twilio's own libraries
//! do, the URL is tried both without its port and with the default port (443 for https,
//! 80 otherwise) added. For JSON bodies Twilio adds `bodySHA256=<hex>` to the query: the
//! signature then covers the URL alone and the SHA-256 of the raw body must match the
//! parameter.
//!
//! [`crm_core::WebhookRequest::url`] must be the public URL configured in Twilio (scheme,
//! host and query exactly as Twilio called it), not the URL seen behind a proxy.
//!
//! The form body has to be decoded to build the signed string; nothing else is read
//! before the signature matches. Twilio's callbacks carry no timestamp, so the tolerance
//! is unused.
//!
//! Parsing: an inbound message (`SmsStatus`/`MessageStatus` `received`, or a `Body`
//! without a status) becomes [`InboundEvent::Reply`]; status callbacks map `delivered` to
//! [`InboundEvent::Delivered`], `read` to [`InboundEvent::Opened`], `failed` and
//! `undelivered` to [`InboundEvent::Failed`] and any other status to
//! [`InboundEvent::StatusChanged`]. Addresses prefixed `whatsapp:` select
//! [`Channel::WhatsApp`], others [`Channel::Sms`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use crm_core::model::Channel;
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::WebhookConfig;
use super::crypto::{body_id, check_body_size, check_header_id};
use super::crypto::{ct_eq, optional_header, require_secret, required_header};
use super::payload::{form_fields, scalar_members};
use super::payload::{form_pairs, form_value, log_form, parse_json};

/// The provider name.
pub const PROVIDER: &str = "twilio";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Twilio's per-delivery idempotency token header, used as the delivery id.
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";
/// The query parameter carrying the body hash of JSON requests.
pub const BODY_HASH_PARAM: &str = "bodySHA256";
/// The prefix of WhatsApp addresses.
pub const WHATSAPP_PREFIX: &str = "whatsapp:";

type HmacSha1 = Hmac<sha1::Sha1>;

/// The length of an HMAC-SHA1 tag, what `X-Twilio-Signature` carries in base64.
const SIGNATURE_BYTES: usize = 20;

/// Verifies and parses Twilio webhooks.
pub struct TwilioWebhook {
    auth_token: SecretString,
    config: WebhookConfig,
}

impl TwilioWebhook {
    /// A verifier for the account's Auth Token.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the token is empty.
    pub fn new(auth_token: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        require_secret(&auth_token)?;
        Ok(Self { auth_token, config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The signature of `url` (used exactly as given) and POST `params`, as Twilio would
    /// send it. Pass no params for JSON requests (their URL carries `bodySHA256`).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] if the token cannot key an HMAC (never for HMAC).
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> Result<String, WebhookError> {
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable();
        self.signature(url, &sorted)
    }

    fn signature(&self, url: &str, sorted: &[(&str, &str)]) -> Result<String, WebhookError> {
        let mut mac =
            <HmacSha1 as KeyInit>::new_from_slice(self.auth_token.expose_secret().as_bytes())
                .map_err(|_| WebhookError::InvalidSecret("HMAC key rejected".to_owned()))?;
        mac.update(url.as_bytes());
        for (key, value) in sorted {
            mac.update(key.as_bytes());
            mac.update(value.as_bytes());
        }
        Ok(STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for TwilioWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioWebhook")
            .field("auth_token", &"[redacted]")
            .field("config", &self.config)
            .finish()
    }
}

impl InboundWebhook for TwilioWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        _now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let request = unverified.request();
        check_body_size(request, self.config.max_body_bytes())?;
        // Cheap structural checks before the body is hashed or decoded.
        let signature = required_header(request, SIGNATURE_HEADER)?;
        if STANDARD.decode(signature).map(|tag| tag.len()) != Ok(SIGNATURE_BYTES) {
            return Err(WebhookError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "expected the base64 of a 20-byte HMAC-SHA1".to_owned(),
            });
        }
        let token = optional_header(request, IDEMPOTENCY_HEADER)?;
        if let Some(token) = token {
            check_header_id(IDEMPOTENCY_HEADER, token)?;
        }
        let params = match body_hash_param(&request.url) {
            Some(hash) => {
                let expected = Sha256::digest(&request.body);
                let body_ok = hex::decode(hash.trim()).is_ok_and(|h| ct_eq(&h, &expected));
                if !body_ok {
                    return Err(WebhookError::InvalidSignature);
                }
                Vec::new()
            }
            None => form_pairs(&request.body),
        };
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable();
        // Some Twilio libraries collapse identical repeated pairs; try that form as well.
        let mut collapsed = sorted.clone();
        collapsed.dedup();
        let mut matched = false;
        for url in url_variants(&request.url) {
            matched |= ct_eq(
                self.signature(&url, &sorted)?.as_bytes(),
                signature.as_bytes(),
            );
            if collapsed.len() != sorted.len() {
                matched |= ct_eq(
                    self.signature(&url, &collapsed)?.as_bytes(),
                    signature.as_bytes(),
                );
            }
        }
        if !matched {
            return Err(WebhookError::InvalidSignature);
        }
        let delivery_id = match token {
            Some(token) if !token.is_empty() => Some(token.to_owned()),
            _ => body_id(message_key(&params))?,
        };
        Ok(unverified.accept(delivery_id))
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let request = webhook.request();
        let params = if body_hash_param(&request.url).is_some() {
            // Numbers keep their exact text; NULs become U+FFFD.
            parse_json(&request.body)?;
            scalar_members(&request.body)
        } else {
            form_fields(&request.body)
        };
        log_form(PROVIDER, &params);
        parse_params(&params)
    }
}

/// The `bodySHA256` query parameter of `url`, if any.
fn body_hash_param(url: &str) -> Option<String> {
    let (_, after) = url.split_once('?')?;
    let query = after.split('#').next().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == BODY_HASH_PARAM)
        .map(|(_, v)| v.into_owned())
}

/// The URL without its port and with the scheme's default port, the two forms Twilio's
/// libraries try (one of them is the URL as given). The text is otherwise untouched.
fn url_variants(url: &str) -> Vec<String> {
    let Some(authority_start) = url.find("://").map(|i| i + 3) else {
        return vec![url.to_owned()];
    };
    let scheme = url.get(..authority_start - 3).unwrap_or_default();
    let rest = url.get(authority_start..).unwrap_or_default();
    let authority_end = authority_start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = url.get(authority_start..authority_end).unwrap_or_default();
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = authority.get(host_start..).unwrap_or_default();
    let colon = if host_port.starts_with('[') {
        host_port.find("]:").map(|i| i + 1)
    } else {
        host_port.rfind(':')
    };
    let port = colon.and_then(|c| host_port.get(c + 1..));
    match (colon, port) {
        (Some(c), Some(p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            let cut = authority_start + host_start + c;
            let without = format!(
                "{}{}",
                url.get(..cut).unwrap_or_default(),
                url.get(authority_end..).unwrap_or_default()
            );
            vec![without, url.to_owned()]
        }
        _ => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            let with = format!(
                "{}:{default}{}",
                url.get(..authority_end).unwrap_or_default(),
                url.get(authority_end..).unwrap_or_default()
            );
            vec![url.to_owned(), with]
        }
    }
}

fn non_empty<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form_value(params, key).filter(|v| !v.is_empty())
}

fn message_sid(params: &[(String, String)]) -> Option<&str> {
    non_empty(params, "MessageSid")
        .or_else(|| non_empty(params, "SmsMessageSid"))
        .or_else(|| non_empty(params, "SmsSid"))
}

fn message_status(params: &[(String, String)]) -> Option<&str> {
    non_empty(params, "MessageStatus").or_else(|| non_empty(params, "SmsStatus"))
}

/// `MessageSid:status`: stable across retries of one callback, distinct per status.
fn message_key(params: &[(String, String)]) -> Option<String> {
    let sid = message_sid(params)?;
    Some(match message_status(params) {
        Some(status) => format!("{sid}:{status}"),
        None => sid.to_owned(),
    })
}

fn parse_params(params: &[(String, String)]) -> Result<Vec<InboundEvent>, WebhookError> {
    let from = non_empty(params, "From");
    let to = non_empty(params, "To");
    let whatsapp = [from, to]
        .iter()
        .flatten()
        .any(|a| a.starts_with(WHATSAPP_PREFIX));
    let channel = if whatsapp {
        Channel::WhatsApp
    } else {
        Channel::Sms
    };
    let status = message_status(params).map(str::to_ascii_lowercase);
    let body = non_empty(params, "Body");
    let inbound = match status.as_deref() {
        Some("received" | "receiving") => true,
        None => body.is_some() || non_empty(params, "NumMedia").is_some(),
        Some(_) => false,
    };
    if inbound {
        let Some(from) = from else {
            return Err(WebhookError::MalformedPayload(
                "missing field From".to_owned(),
            ));
        };
        return Ok(vec![InboundEvent::Reply {
            channel,
            from: from.trim_start_matches(WHATSAPP_PREFIX).to_owned(),
            text: body.map(str::to_owned),
            in_reply_to: non_empty(params, "OriginalRepliedMessageSid").map(str::to_owned),
        }]);
    }
    let Some(status) = status else {
        return Ok(Vec::new());
    };
    let provider_message_id = message_sid(params)
        .ok_or_else(|| WebhookError::MalformedPayload("missing field MessageSid".to_owned()))?
        .to_owned();
    let event = match status.as_str() {
        "delivered" => InboundEvent::Delivered {
            channel,
            provider_message_id,
        },
        "read" => InboundEvent::Opened {
            channel,
            provider_message_id,
        },
        "failed" | "undelivered" => InboundEvent::Failed {
            channel,
            provider_message_id,
            reason: match (
                non_empty(params, "ErrorCode"),
                non_empty(params, "ErrorMessage"),
            ) {
                (Some(code), Some(message)) => Some(format!("{code}: {message}")),
                (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
                (None, None) => Some(status.clone()),
            },
        },
        _ => InboundEvent::StatusChanged {
            channel,
            provider_message_id,
            status,
        },
    };
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_follow_twilio_libraries() {
        assert_eq!(
            url_variants("https://a.com/x?y=1"),
            vec!["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://u:p@a.com:1234?y=1"),
            vec!["http://u:p@a.com?y=1", "http://u:p@a.com:1234?y=1"]
        );
        assert_eq!(
            url_variants("http://[::1]"),
            vec!["http://[::1]", "http://[::1]:80"]
        );
        assert_eq!(
            url_variants("http://[::1]:8"),
            vec!["http://[::1]", "http://[::1]:8"]
        );
        assert_eq!(url_variants("not a url"), vec!["not a url"]);
    }
}
