//! Notification: one confirmation email per saga, delivered into a Maildir under `DATA_DIR` by
//! the Maildir rules (write into `tmp/`, then rename into `new/`), where any mail client can
//! read it.
//!
//! **Invariant: at most one mail per saga, and a sent record for exactly the sagas mailed.**
//! The file name is fixed per saga, so writing the mail again (after a crash between the write
//! and the commit of the barrier) replaces it instead of adding a second one. A mail that
//! cannot be written (a full disk) is not a bad command: the command waits, unacknowledged,
//! until it can be.

use std::io::Write;
use std::path::PathBuf;

use sagaflow_events::{CommandBody, CommandMessage, Forgotten, OrderId, Participant};
use serde::{Deserialize, Serialize};

use crate::barrier::Answer;
use crate::domain::{abort, get_json, put_json, scan_json, Books, Domain, DomainError, TxResult};

pub struct Notification {
    pub maildir: PathBuf,
    /// Mails written since the last batch was made durable, open.
    unsynced: std::sync::Mutex<Vec<std::fs::File>>,
}

/// Makes `mails` durable, with their names in `new`: each mail's `fdatasync`, then the
/// folder's `fsync`. Every mail's writeback is started first, so that their blocks are allocated
/// together and the first sync's journal commit carries them all; the later syncs then find
/// their data written. Unlike `syncfs`, nothing else on the file system is written or waited
/// for.
fn sync_mails(mails: &[std::fs::File], new: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    for mail in mails {
        // SAFETY: a file descriptor we own, open for the duration of the call.
        if unsafe { libc::sync_file_range(mail.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for mail in mails {
        mail.sync_data()?;
    }
    std::fs::File::open(new)?.sync_all()
}

/// What was sent for one saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub order_id: OrderId,
    pub mails: u64,
}

fn key(saga_id: &str) -> String {
    format!("sent/{saga_id}")
}

impl Notification {
    pub fn new(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let maildir = data_dir.join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        Ok(Self { maildir, unsynced: Default::default() })
    }

    fn deliver(&self, command: &CommandMessage) -> std::io::Result<()> {
        let CommandBody::SendNotification { user_id, amount_cents, items } = &command.body else {
            return Ok(());
        };
        let name = format!("{}.sagaflow", command.saga_id);
        let lines: Vec<String> = items
            .iter()
            .map(|l| format!("  {} x {} at {}", l.quantity, l.product_id, l.unit_price_cents))
            .collect();
        let mail = format!(
            "From: orders@sagaflow.invalid\r\nTo: {user_id}@sagaflow.invalid\r\nSubject: Your order {order} is confirmed\r\n\
             Date: {date}\r\nMessage-ID: <{saga}@sagaflow.invalid>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Thank you! Order {order} is confirmed.\r\n\r\n{lines}\r\n\r\nTotal: {amount_cents}\r\n",
            order = command.order_id,
            saga = command.saga_id,
            date = sagaflow_runtime::rfc3339(sagaflow_runtime::now_millis()),
            lines = lines.join("\r\n"),
        );
        // Not synced here: `make_durable` syncs the whole batch's mails at once, before the
        // commit that records them as sent. A crash before that commit leaves a mail that the
        // redelivered command writes again under the same name.
        let tmp = self.maildir.join("tmp").join(&name);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(mail.as_bytes())?;
        let delivered = self.maildir.join("new").join(&name);
        std::fs::rename(&tmp, &delivered)?;
        self.unsynced.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        Ok(())
    }

    /// Mails in `new/`, for tests and the chaos check.
    pub fn delivered(&self) -> usize {
        std::fs::read_dir(self.maildir.join("new")).map(|d| d.count()).unwrap_or(0)
    }
}

impl Domain for Notification {
    fn participant(&self) -> Participant {
        Participant::Notification
    }

    fn act(&self, books: &Books<'_>, command: &CommandMessage) -> TxResult<Answer> {
        let key = key(command.saga_id.as_str());
        if get_json::<Sent>(books, &key)?.is_some() {
            return abort(DomainError::Inconsistent(format!("saga {} was mailed already", command.saga_id)));
        }
        // A batch that cannot be made durable is applied again later, and delivers again: the
        // mail's file name is fixed by the saga, so that is still one mail.
        if let Err(e) = self.deliver(command) {
            return abort(DomainError::Unavailable(format!("cannot write the mail: {e}")));
        }
        put_json(books, &key, &Sent { order_id: command.order_id.clone(), mails: 1 });
        Ok(Answer::success())
    }

    fn undo(&self, _: &Books<'_>, _: &CommandMessage, _: bool) -> TxResult<()> {
        // An email cannot be unsent; the saga never asks (notification has no compensation).
        Ok(())
    }

    fn forget(&self, books: &Books<'_>, saga: &Forgotten) -> TxResult<()> {
        // The mail itself stays: it is the customer's, not the books'.
        books.remove(&key(saga.saga_id.as_str()));
        Ok(())
    }

    /// Makes the batch's mails durable ([`sync_mails`]) before the commit that records them.
    /// (One `fdatasync` per mail in line, each waiting for its own journal commit, capped the
    /// whole system's throughput. One `syncfs` of the file system cost as much CPU, wrote out
    /// every other program's data too, and reported any error since its last call.)
    fn make_durable(&self) -> Result<(), DomainError> {
        // Taken whether or not the sync succeeds: a batch that could not be made durable is
        // applied again, and writes its mails again as new files, which are the ones to sync.
        let mails = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|e| e.into_inner()));
        if mails.is_empty() {
            return Ok(());
        }
        sync_mails(&mails, &self.maildir.join("new"))
            .map_err(|e| DomainError::Unavailable(format!("cannot make the mails durable: {e}")))
    }

    fn view(&self, books: &sled::Tree) -> serde_json::Value {
        let mut per_order: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for (_, sent) in scan_json::<Sent>(books, "sent/") {
            let n = per_order.get(sent.order_id.as_str()).and_then(|v| v.as_u64()).unwrap_or(0);
            per_order.insert(sent.order_id.to_string(), n.saturating_add(sent.mails).into());
        }
        serde_json::json!({ "notifications": per_order, "maildir": self.maildir, "delivered": self.delivered() })
    }

    fn path(&self) -> &'static str {
        "/notifications"
    }
}
