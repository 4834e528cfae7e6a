//! [`LoggingNotifier`]: the default notifier, which logs that an item waits.

use async_trait::async_trait;

use crate::approval::Notifier;
use crate::channel::ChannelError;
use crate::model::ApprovalItem;

/// Logs every approval item that needs a person (ids and channel only, never the
/// draft or the recipient). The engine's default [`Notifier`]: hosts plug in Slack,
/// email or their own UI with [`EngineBuilder::notifier`](super::EngineBuilder::notifier).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggingNotifier;

#[async_trait]
impl Notifier for LoggingNotifier {
    async fn approval_needed(&self, item: &ApprovalItem) -> Result<(), ChannelError> {
        tracing::info!(
            workspace_id = %item.workspace_id,
            approval_id = %item.id,
            outbox_message_id = %item.outbox_message_id,
            channel = %item.channel,
            "an approval item waits for a person"
        );
        Ok(())
    }
}
