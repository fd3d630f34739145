"""What the app remembers across restarts: alerts, follows, bulk runs, the audit trail. Imports neither Slack nor
RunPod code.
"""

from bot.store.sqlite import AuditEntry, Store

__all__ = ["AuditEntry", "Store"]
