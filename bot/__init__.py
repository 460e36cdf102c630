"""The Slack layer: a Bolt app in Socket Mode that answers questions through rag.service.RagService."""
