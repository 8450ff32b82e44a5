//! Notification: one confirmation email per order, delivered into a Maildir under `DATA_DIR`
//! by the Maildir rules (write into `tmp/`, then rename into `new/`), where any mail client can
//! read it.
//!
//! The file name is fixed per order, so writing the mail again (after a crash between the write
//! and the commit of the barrier) replaces it instead of adding a second one.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use sagaflow_events::{CommandBody, CommandMessage, Participant};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::barrier::Answer;
use crate::domain::{get_json, put_json, scan_json, Domain, TxResult};

pub struct Notification {
    pub maildir: PathBuf,
    /// Mails written since the last batch was made durable.
    unsynced: Mutex<Vec<PathBuf>>,
}

impl Notification {
    pub fn new(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let maildir = data_dir.join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        Ok(Self { maildir, unsynced: Mutex::default() })
    }

    fn deliver(&self, command: &CommandMessage) -> std::io::Result<()> {
        let CommandBody::SendNotification { user_id, amount_cents, items } = &command.body else {
            return Ok(());
        };
        let name = format!("{}.sagaflow", command.order_id);
        let lines: Vec<String> = items
            .iter()
            .map(|l| format!("  {} x {} at {}", l.quantity, l.product_id, l.unit_price_cents))
            .collect();
        let mail = format!(
            "From: orders@sagaflow.invalid\r\nTo: {user_id}@sagaflow.invalid\r\nSubject: Your order {order} is confirmed\r\n\
             Date: {date}\r\nMessage-ID: <{order}@sagaflow.invalid>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Thank you! Order {order} is confirmed.\r\n\r\n{lines}\r\n\r\nTotal: {amount_cents}\r\n",
            order = command.order_id,
            date = sagaflow_runtime::rfc3339(sagaflow_runtime::now_millis()),
            lines = lines.join("\r\n"),
        );
        // Not synced here: `make_durable` syncs the whole batch's mails at once, before the
        // commit that records them as sent. A crash before that commit leaves a mail that the
        // redelivered command writes again under the same name.
        let tmp = self.maildir.join("tmp").join(&name);
        std::fs::File::create(&tmp)?.write_all(mail.as_bytes())?;
        let delivered = self.maildir.join("new").join(&name);
        std::fs::rename(&tmp, &delivered)?;
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).push(delivered);
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

    fn act(&self, state: &TransactionalTree, command: &CommandMessage) -> TxResult<Answer> {
        // The engine is the only writer, so this closure never runs twice; and if it did, the
        // fixed file name would keep it to one mail.
        self.deliver(command)
            .map_err(|e| ConflictableTransactionError::Abort(format!("cannot deliver the mail: {e}")))?;
        let key = format!("sent/{}", command.order_id);
        let sent: u64 = get_json(state, &key)?.unwrap_or(0);
        put_json(state, &key, &(sent + 1))?;
        Ok(Answer::success())
    }

    fn undo(&self, _: &TransactionalTree, _: &CommandMessage, _: bool) -> TxResult<()> {
        // An email cannot be unsent; the saga never asks (notification has no compensation).
        Ok(())
    }

    /// Syncs every mail of the batch, in parallel so the file system can fold the syncs into
    /// few journal commits, then the folder once. One fsync pair per mail, in line, used to
    /// cap the whole system's throughput.
    fn make_durable(&self) -> std::io::Result<()> {
        let mails = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()));
        if mails.is_empty() {
            return Ok(());
        }
        const SYNCERS: usize = 8;
        let chunk = mails.len().div_ceil(SYNCERS);
        std::thread::scope(|scope| {
            let syncers: Vec<_> = mails
                .chunks(chunk)
                .map(|paths| {
                    scope.spawn(move || paths.iter().try_for_each(|p| std::fs::File::open(p)?.sync_data()))
                })
                .collect();
            syncers.into_iter().try_for_each(|s| {
                s.join().unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
            })
        })?;
        std::fs::File::open(self.maildir.join("new"))?.sync_all()
    }

    fn view(&self, state: &sled::Tree) -> serde_json::Value {
        let sent: serde_json::Map<String, serde_json::Value> =
            scan_json::<u64>(state, "sent/").into_iter().map(|(order, n)| (order, n.into())).collect();
        serde_json::json!({ "notifications": sent, "maildir": self.maildir, "delivered": self.delivered() })
    }

    fn path(&self) -> &'static str {
        "/notifications"
    }
}
