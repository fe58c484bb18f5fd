//! E-mail: a short summary of a finished load to the lender's `notify_email`, with the result
//! file attached when at most `[smtp] attach_max_bytes`. Sent through `[smtp]` (no TLS,
//! STARTTLS or implicit TLS; optional login with a password read from `password_file`).

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Tried;
use crate::config::{Config, SmtpTls};
use crate::layout;
use crate::store::Delivery;

pub async fn send(cfg: &Config, env: &str, d: &Delivery) -> Tried {
    let Some(smtp) = &cfg.smtp else {
        return Err("no [smtp] section".into());
    };
    let l = &d.load;
    let result_name = layout::result_name(&l.pickup_name, &l.stamp);
    let c = &l.counts;
    let outcome = match &l.error_message {
        Some(e) => format!("refused: {e}"),
        None if c.failures() > 0 => format!("{} record(s) failed", c.failures()),
        None => "all records applied".into(),
    };
    let subject = format!(
        "bulkload {env}/{}: {} load {} {}",
        l.lender,
        l.pickup_name,
        l.id,
        if l.error_message.is_some() {
            "refused"
        } else if c.failures() > 0 {
            "finished with problems"
        } else {
            "finished"
        }
    );
    let mut text = format!(
        "Load {} of {} ({env}) finished at {}: {outcome}.\n\n",
        l.id, l.pickup_name, l.ended_at
    );
    for (k, v) in c.named() {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!(
        "\nResult file: /{env}/import/results/{result_name}\nProcessed as: /{env}/import/processed/{}\n",
        layout::processed_stamped_name(&l.pickup_name, &l.stamp)
    ));
    let result_path = layout::lender_dirs(&cfg.data_dir, &l.lender, env)
        .results
        .join(&result_name);
    let attachment = match std::fs::metadata(&result_path) {
        Ok(m) if m.len() <= smtp.attach_max_bytes => std::fs::read(&result_path).ok(),
        Ok(_) => {
            text.push_str("(The result file is too large to attach; fetch it over SFTP.)\n");
            None
        }
        Err(_) => None,
    };

    let from: Mailbox = smtp.from.parse().map_err(|e| format!("[smtp] from: {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{}@bulkload>", d.msg_id)));
    for a in d.target.split(',').filter(|a| !a.is_empty()) {
        b = b.to(a.parse().map_err(|e| format!("address {a:?}: {e}"))?);
    }
    let body = SinglePart::plain(text);
    let msg = match attachment {
        Some(bytes) => b.multipart(MultiPart::mixed().singlepart(body).singlepart(
            Attachment::new(result_name).body(
                bytes,
                ContentType::parse("application/json").expect("valid"),
            ),
        )),
        None => b.singlepart(body),
    }
    .map_err(|e| e.to_string())?;

    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| e.to_string())?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?
        }
    };
    let mut builder = builder.port(smtp.port).timeout(Some(cfg.notify.timeout));
    if let Some(user) = &smtp.username {
        let password = match &smtp.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("[smtp] password_file {}: {e}", p.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder
        .build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
