//! Lender pages of the console, per environment: recent loads, a load (counts, problems,
//! downloads), upload and validate (into `pickup/` / `validate/`, then a pass, exactly as an
//! SFTP upload), templates / schemas / lookups, and the SFTP and API connection details.
//!
//! Owns: those handlers and the upload tickets a browser polls. Every store read and file
//! served is scoped by the signed-in user's lender: another lender's load or an unknown
//! environment answers 404.
//! Must not: apply records (a pass does), or serve a path built from a client's text without
//! `layout`'s naming rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use maud::{html, Markup};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::session::{self, Role, Session};
use super::views::{self, Nav};
use super::{csrf_refused, html_page, not_found, Console, MAX_TICKETS};
use crate::config::Config;
use crate::input::Format;
use crate::layout::{self, FileClass};
use crate::records::Kind;
use crate::store::{LoadRow, Store, StoreError};

/// Loads and problems shown per page.
const PER_PAGE: i64 = 25;

pub(crate) fn routes(max_upload: usize) -> Router<Arc<Console>> {
    Router::new()
        .route("/console/{env}/loads", get(loads))
        .route("/console/{env}/loads/{id}", get(load))
        .route("/console/{env}/loads/{id}/problems/{seq}", get(problem))
        .route("/console/{env}/loads/{id}/files/{which}", get(load_file))
        .route(
            "/console/{env}/upload",
            get(upload_page)
                .post(upload)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/console/{env}/validate", get(validate_page))
        .route("/console/{env}/uploads/{ticket}", get(ticket_page))
        .route("/console/{env}/uploads/{ticket}/status", get(ticket_status))
        .route("/console/{env}/downloads", get(downloads))
        .route("/console/{env}/downloads/{name}", get(download))
        .route("/console/{env}/connect", get(connect))
}

/// A file uploaded from the console, until its load is found.
#[derive(Clone)]
pub(crate) struct Ticket {
    lender: String,
    env: String,
    name: String,
    dry_run: bool,
    /// ISO 8601: the load starts after this.
    at: String,
    created: Instant,
}

/// The signed-in lender user for environment `env`, or the response to send instead
/// (sign-in, or 404 for an operator or an unknown environment).
struct Who {
    session: Session,
    lender: String,
    env: String,
    cfg: Arc<Config>,
}

impl Who {
    fn nav<'a>(&'a self, section: &'a str) -> Nav<'a> {
        Nav::Lender {
            lender: &self.lender,
            email: &self.session.email,
            env: &self.env,
            envs: &self.cfg.environments,
            section,
            csrf: &self.session.csrf,
        }
    }

    fn dirs(&self) -> layout::LenderDirs {
        layout::lender_dirs(&self.cfg.data_dir, &self.lender, &self.env)
    }
}

fn who(c: &Console, headers: &HeaderMap, env: &str) -> Result<Who, Response> {
    let s = c.signed_in(headers)?;
    let Role::Lender(lender) = s.role.clone() else {
        return Err(not_found());
    };
    let cfg = c.cfg();
    if !cfg.environments.iter().any(|e| e == env) || cfg.lender(&lender).is_none() {
        return Err(not_found());
    }
    Ok(Who {
        session: s,
        lender,
        env: env.to_string(),
        cfg,
    })
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: cannot read the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        html_page(views::page(
            "Something went wrong",
            Nav::None,
            html! { p { "The console cannot read its data right now. Try again in a moment." } },
        )),
    )
        .into_response()
}

/// Runs `f` on the environment's store off the async threads; `Ok(None)` when the store does
/// not exist yet (no load ever ran there).
async fn with_store<T: Send + 'static>(
    w: &Who,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<Option<T>, Response> {
    let cfg = w.cfg.clone();
    let env = w.env.clone();
    tokio::task::spawn_blocking(move || {
        let Some(store) = crate::store::open_existing_env(&cfg, &env)? else {
            return Ok(None);
        };
        f(&*store).map(Some)
    })
    .await
    .map_err(server_error)?
    .map_err(server_error)
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
}

impl ListQuery {
    fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 1_000_000)
    }
    fn filter(&self) -> String {
        self.q.trim().chars().take(200).collect()
    }
}

fn load_href(env: &str, id: i64) -> String {
    format!("/console/{env}/loads/{id}")
}

async fn loads(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (filter, page) = (q.filter(), q.page());
    let (lender, f2) = (w.lender.clone(), filter.clone());
    let (total, rows) = match with_store(&w, move |s| {
        s.console_loads(&lender, &f2, (page - 1) * PER_PAGE, PER_PAGE)
    })
    .await
    {
        Ok(x) => x.unwrap_or_default(),
        Err(r) => return r,
    };
    let base = format!("/console/{env}/loads");
    let body = html! {
        p { "Every file of yours in " strong { (env) } ", whichever way it came (SFTP, API or this console). "
            a href=(format!("/console/{env}/upload")) { "Upload a file" } "." }
        (views::filter_form(&base, &filter, "Filter by file name or error"))
        @if rows.is_empty() {
            p { @if filter.is_empty() { "No loads yet." } @else { "No load matches." } }
        } @else {
            div.scroll tabindex="0" {
                table {
                    caption { "Recent loads, newest first" }
                    thead { tr {
                        th scope="col" { "Load" } th scope="col" { "File" } th scope="col" { "Source" }
                        th scope="col" { "State" } th scope="col" { "Succeeded" } th scope="col" { "Failed" }
                        th scope="col" { "Started (UTC)" } th scope="col" { "Error" }
                    } }
                    tbody {
                        @for l in &rows {
                            tr {
                                td { a href=(load_href(&env, l.id)) { "#" (l.id) } }
                                td { (l.pickup_name) @if l.dry_run { " " span.tag { "validation" } } }
                                td { (l.source) }
                                td { (views::state(l)) }
                                td { (l.counts.successes()) }
                                td { (l.counts.failures()) }
                                td { (l.started_at) }
                                td { (l.error_message.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        (views::pager(&base, &filter, page, PER_PAGE, total))
    };
    html_page(views::page("Loads", w.nav("loads"), body))
}

/// The files of a load that exist: (which, path, download name).
fn load_files(w: &Who, l: &LoadRow, newest_of_name: bool) -> Vec<(&'static str, PathBuf, String)> {
    let d = w.dirs();
    let name = &l.pickup_name;
    let mut out = Vec::new();
    let result = if l.dry_run {
        layout::validate_result_name(name, &l.stamp)
    } else {
        layout::result_name(name, &l.stamp)
    };
    out.push(("result", d.results.join(&result), result));
    if let Some(f) = Format::of_name(name) {
        let failed = layout::failed_name(name, &l.stamp, f.ext());
        out.push(("failed", d.results.join(&failed), failed));
    }
    if !l.dry_run {
        let stamped = layout::processed_stamped_name(name, &l.stamp);
        let p = d.processed.join(&stamped);
        if p.exists() {
            out.push(("original", p, name.clone()));
        } else if newest_of_name {
            let last = layout::processed_last_name(name);
            out.push(("original", d.processed.join(last), name.clone()));
        }
    }
    out.retain(|(_, p, _)| p.is_file());
    out
}

/// The load `id` of the user's lender with whether it is the newest applied load of its name.
async fn find_load(w: &Who, id: i64) -> Result<(LoadRow, bool), Response> {
    let lender = w.lender.clone();
    let found = with_store(w, move |s| {
        let Some(l) = s.load_by_number(&lender, id)? else {
            return Ok(None);
        };
        let (_, same) = s.console_loads(&lender, &l.pickup_name, 0, 50)?;
        let newest = same
            .iter()
            .find(|x| x.pickup_name == l.pickup_name && !x.dry_run)
            .is_some_and(|x| x.row == l.row);
        Ok(Some((l, newest)))
    })
    .await?;
    found.flatten().ok_or_else(not_found)
}

fn load_summary(env: &str, l: &LoadRow) -> Markup {
    html! {
        p.state { "State: " strong { (views::state(l)) }
            @if l.dry_run { " (validation only: nothing was applied)" } }
        @if let Some(e) = &l.error_message { p.error { "The whole file was refused: " (e) } }
        (views::counts(&l.counts))
        p { a href=(load_href(env, l.id)) { "Open load #" (l.id) " (" (l.pickup_name) ")" } }
    }
}

async fn load(
    State(c): State<Arc<Console>>,
    UrlPath((env, id)): UrlPath<(String, i64)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (l, newest) = match find_load(&w, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (filter, page) = (q.filter(), q.page());
    let (row, f2) = (l.row, filter.clone());
    let (total, problems) = match with_store(&w, move |s| {
        s.console_problems(row, &f2, (page - 1) * PER_PAGE, PER_PAGE)
    })
    .await
    {
        Ok(x) => x.unwrap_or_default(),
        Err(r) => return r,
    };
    let files = load_files(&w, &l, newest);
    let base = load_href(&env, id);
    let body = html! {
        dl.meta {
            div { dt { "File" } dd { (l.pickup_name) } }
            div { dt { "Source" } dd { (l.source) } }
            div { dt { "Started (UTC)" } dd { (l.started_at) } }
            div { dt { "Ended (UTC)" } dd { (l.ended_at) } }
        }
        p.state { "State: " strong { (views::state(&l)) }
            @if l.dry_run { " (validation only: nothing was applied)" } }
        @if let Some(e) = &l.error_message { p.error { "The whole file was refused: " (e) } }
        (views::counts(&l.counts))
        h2 { "Downloads" }
        @if files.is_empty() {
            p { "No file to download yet." }
        } @else {
            ul.downloads {
                @for (which, _, name) in &files {
                    li { a href=(format!("{base}/files/{which}")) download {
                        @match *which {
                            "result" => "Result file",
                            "failed" => "Failed records (fix them and upload this file again)",
                            _ => "Original file",
                        }
                        " (" (name) ")"
                    } }
                }
            }
        }
        h2 { "Problems" }
        (views::filter_form(&base, &filter, "Filter by field or message"))
        @if problems.is_empty() {
            p { @if filter.is_empty() { "No problems." } @else { "No problem matches." } }
        } @else {
            div.scroll tabindex="0" {
                table.problems {
                    caption { "Problems, in file order" }
                    thead { tr { th scope="col" { "Record" } th scope="col" { "Problem" } } }
                    tbody {
                        @for (seq, idx, msg) in &problems {
                            tr {
                                td { a href=(format!("{base}/problems/{seq}")) { "#" (idx + 1) } }
                                td { (msg) }
                            }
                        }
                    }
                }
            }
        }
        (views::pager(&base, &filter, page, PER_PAGE, total))
    };
    html_page(views::page(
        &format!("Load #{}", l.id),
        w.nav("loads"),
        body,
    ))
}

/// The field a problem's message is about (`Field: ...`), if it names one.
fn problem_field(msg: &str) -> Option<&str> {
    let (head, _) = msg.split_once(": ")?;
    (!head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
    .then_some(head)
}

async fn problem(
    State(c): State<Arc<Console>>,
    UrlPath((env, id, seq)): UrlPath<(String, i64, i64)>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (l, newest) = match find_load(&w, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let row = l.row;
    let p = match with_store(&w, move |s| s.problems_page(row, seq - 1, 1)).await {
        Ok(x) => x.unwrap_or_default(),
        Err(r) => return r,
    };
    let Some((_, idx, msg)) = p.into_iter().find(|(s, _, _)| *s == seq) else {
        return not_found();
    };
    let base = load_href(&env, id);
    let failed = load_files(&w, &l, newest)
        .into_iter()
        .any(|(which, _, _)| which == "failed");
    let body = html! {
        dl.meta {
            div { dt { "Load" } dd { a href=(base) { "#" (l.id) " (" (l.pickup_name) ")" } } }
            div { dt { "Record" } dd { "#" (idx + 1) " of the file" } }
            @if let Some(f) = problem_field(&msg) { div { dt { "Field" } dd { (f) } } }
        }
        p.problem { (msg) }
        @if let Some(f) = problem_field(&msg) {
            p { a href=(format!("{base}?q={}", views::form_encode(f))) { "Every problem of field " (f) } }
        }
        @if failed {
            p { "To fix it: download the " a href=(format!("{base}/files/failed")) download { "failed records" }
                ", correct the record (the " code { "_problems" } " column says what is wrong; it is ignored on upload) and "
                a href=(format!("/console/{env}/upload")) { "upload the file again" } "." }
        }
    };
    html_page(views::page(
        &format!("Problem with record #{}", idx + 1),
        w.nav("loads"),
        body,
    ))
}

/// A download name safe in a `Content-Disposition` header.
fn attachment(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

fn mime_of(name: &str) -> &'static str {
    if name.ends_with(".csv") {
        "text/csv; charset=utf-8"
    } else if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Streams a file (never a link) as a download.
async fn send_file(path: &Path, name: &str) -> Response {
    let p = path.to_path_buf();
    let file = match tokio::task::spawn_blocking(move || crate::fsutil::open_nofollow(&p)).await {
        Ok(Ok(f)) => tokio::fs::File::from_std(f),
        _ => return not_found(),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mime_of(name)),
    );
    if let Ok(v) = HeaderValue::from_str(&attachment(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn load_file(
    State(c): State<Arc<Console>>,
    UrlPath((env, id, which)): UrlPath<(String, i64, String)>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (l, newest) = match find_load(&w, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match load_files(&w, &l, newest)
        .into_iter()
        .find(|(k, _, _)| *k == which)
    {
        Some((_, path, name)) => send_file(&path, &name).await,
        None => not_found(),
    }
}

fn upload_form(w: &Who, dry_run: bool) -> Markup {
    let env = &w.env;
    html! {
        @if dry_run {
            p { "Validation checks a file against everything a load checks, store included (taken e-mails, unknown loans, ...), then rolls it back: nothing is applied. Its problems are shown like a load's." }
        } @else {
            p { "Upload a JSON or CSV file of any of the nine record types. Its name says its type (" code { "employees" } ", " code { "loans_march.csv" } ", ...). It goes into the same queue as SFTP and API uploads; the result appears here when the load is done." }
        }
        form #upload.upload method="post" action=(format!("/console/{env}/upload")) enctype="multipart/form-data" data-poll="1" {
            input type="hidden" name="csrf" value=(w.session.csrf);
            input type="hidden" name="mode" value=(if dry_run { "validate" } else { "apply" });
            div.drop #drop {
                label for="file" { "File (.json or .csv)" }
                input #file type="file" name="file" accept=".json,.csv,application/json,text/csv" required;
                p.hint #drophint hidden { "…or drop it here." }
            }
            button type="submit" { @if dry_run { "Validate" } @else { "Upload" } }
        }
        div #progress-box hidden {
            label for="progress" { "Uploading" }
            progress #progress max="100" value="0" { "0%" }
        }
        div #outcome role="status" aria-live="polite" {}
        details {
            summary { "Record types and their file names" }
            ul { @for k in Kind::ALL { li { code { (k.prefix()) } " …" code { ".json" } " or " code { ".csv" } } } }
        }
    }
}

async fn upload_page(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    match who(&c, &headers, &env) {
        Ok(w) => html_page(views::page(
            "Upload",
            w.nav("upload"),
            upload_form(&w, false),
        )),
        Err(r) => r,
    }
}

async fn validate_page(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    match who(&c, &headers, &env) {
        Ok(w) => html_page(views::page(
            "Validate",
            w.nav("validate"),
            upload_form(&w, true),
        )),
        Err(r) => r,
    }
}

/// Why an upload is refused before it is queued.
fn bad_upload(json: bool, status: StatusCode, msg: &str) -> Response {
    if json {
        return (status, Json(serde_json::json!({ "error": msg }))).into_response();
    }
    let mut r = html_page(views::page(
        "Upload refused",
        Nav::None,
        html! { p.error role="alert" { (msg) } p { "Go back and choose another file." } },
    ));
    *r.status_mut() = status;
    r
}

/// The rules a name must pass to be queued (the pass refuses a wrong type or extension with a
/// result; these are the ones that would give no result at all).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || layout::is_ignored_name(name) {
        return Err(format!(
            "{name:?} cannot be uploaded under this name (hidden or temporary names are ignored)."
        ));
    }
    if name.len() > layout::MAX_PICKUP_NAME_BYTES {
        return Err(format!(
            "The file name is longer than {} bytes.",
            layout::MAX_PICKUP_NAME_BYTES
        ));
    }
    if Format::of_name(name).is_none() {
        return Err("Only .json and .csv files are accepted.".into());
    }
    if !matches!(layout::classify(name), FileClass::Records(_)) {
        let types: Vec<&str> = Kind::ALL.iter().map(|k| k.prefix()).collect();
        return Err(format!(
            "The name must start with a record type: {}.",
            types.join(", ")
        ));
    }
    Ok(())
}

/// Where uploads are written before they move into `pickup/` (same file system: a rename).
pub(crate) fn spool_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("console-spool")
}

/// Takes the multipart upload (the CSRF token must come first), spools it, claims it for the
/// lender's next pass (`submit`), and answers with a ticket to poll.
async fn upload(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut csrf_ok = false;
    let mut dry_run = false;
    let spool = spool_dir(&w.cfg);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return bad_upload(
                    json,
                    StatusCode::BAD_REQUEST,
                    &format!("The upload did not arrive whole: {e}"),
                );
            }
        };
        match field.name().unwrap_or("") {
            "csrf" => {
                let v = field.text().await.unwrap_or_default();
                csrf_ok = session::same_token(&w.session.csrf, &v);
            }
            "mode" => dry_run = field.text().await.unwrap_or_default() == "validate",
            "file" => {
                if !csrf_ok {
                    return csrf_refused();
                }
                let name = field
                    .file_name()
                    .map(|n| n.rsplit(['/', '\\']).next().unwrap_or("").to_string())
                    .unwrap_or_default();
                if let Err(m) = check_name(&name) {
                    return bad_upload(json, StatusCode::UNPROCESSABLE_ENTITY, &m);
                }
                return receive(&c, &w, field, &spool, &name, dry_run, json).await;
            }
            _ => {}
        }
    }
    if !csrf_ok {
        return csrf_refused();
    }
    bad_upload(json, StatusCode::BAD_REQUEST, "No file was chosen.")
}

async fn receive(
    c: &Console,
    w: &Who,
    mut field: axum::extract::multipart::Field<'_>,
    spool: &Path,
    name: &str,
    dry_run: bool,
    json: bool,
) -> Response {
    let max = w.cfg.sftp.max_file_bytes;
    if let Err(e) = tokio::fs::create_dir_all(spool).await {
        return server_error(e);
    }
    let tmp = spool.join(format!(".{}.upload", session::random_token()));
    let mut out = match tokio::fs::File::create(&tmp).await {
        Ok(f) => f,
        Err(e) => return server_error(e),
    };
    let mut size: u64 = 0;
    let outcome: Result<(), Response> = async {
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    size += chunk.len() as u64;
                    if size > max {
                        return Err(bad_upload(
                            json,
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &format!("The file is larger than {max} bytes."),
                        ));
                    }
                    out.write_all(&chunk).await.map_err(server_error)?;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(bad_upload(
                        json,
                        StatusCode::BAD_REQUEST,
                        &format!("The upload did not arrive whole: {e}"),
                    ))
                }
            }
        }
        if size == 0 {
            return Err(bad_upload(
                json,
                StatusCode::UNPROCESSABLE_ENTITY,
                "The file is empty.",
            ));
        }
        out.sync_all().await.map_err(server_error)?;
        Ok(())
    }
    .await;
    drop(out);
    if let Err(r) = outcome {
        let _ = tokio::fs::remove_file(&tmp).await;
        return r;
    }
    let at = crate::result::iso(chrono::Utc::now());
    match submit(c, w, &tmp, name, dry_run).await {
        Ok(()) => {}
        Err(r) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return r(json);
        }
    }
    let ticket = session::random_token();
    {
        let mut t = c.tickets.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= MAX_TICKETS {
            if let Some(old) = t
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone())
            {
                t.remove(&old);
            }
        }
        t.insert(
            ticket.clone(),
            Ticket {
                lender: w.lender.clone(),
                env: w.env.clone(),
                name: name.to_string(),
                dry_run,
                at,
                created: Instant::now(),
            },
        );
    }
    tracing::info!(lender = %w.lender, env = %w.env, file = %name, bytes = size, dry_run, user = ?w.session.email, "console upload queued");
    let page = format!("/console/{}/uploads/{ticket}", w.env);
    if json {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "status": format!("{page}/status"), "page": page })),
        )
            .into_response()
    } else {
        Redirect::to(&page).into_response()
    }
}

type Refusal = Box<dyn FnOnce(bool) -> Response + Send>;

/// The one way a console upload enters the intake: the spooled file `tmp` is claimed for the
/// lender's next pass (`work/<claim>`, marked as a web upload, dry run or not: see
/// `files::web_claim_name`) and a pass of the lender is asked for. The pass's recovery applies
/// it exactly once, in the same queue and single writer as SFTP files and API loads, with
/// `Source` "Web"; a crash after the rename leaves it claimed, and the next pass applies it.
async fn submit(
    c: &Console,
    w: &Who,
    tmp: &Path,
    name: &str,
    dry_run: bool,
) -> Result<(), Refusal> {
    let target = w
        .dirs()
        .work
        .join(crate::files::web_claim_name(name, dry_run));
    let from = tmp.to_path_buf();
    let moved = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))?;
        crate::fsutil::rename_noreplace_durable(&from, &target)
    })
    .await;
    match moved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let e = e.to_string();
            return Err(Box::new(move |_| server_error(e)));
        }
        Err(e) => {
            let e = e.to_string();
            return Err(Box::new(move |_| server_error(e)));
        }
    }
    let passes = c.passes.clone();
    let lender = w.lender.clone();
    tokio::spawn(async move {
        passes
            .request_scope(crate::schedule::Scope::Lender(lender), "console upload")
            .await
    });
    Ok(())
}

fn ticket_of(c: &Console, w: &Who, ticket: &str) -> Option<Ticket> {
    let t = c.tickets.lock().unwrap_or_else(|e| e.into_inner());
    t.get(ticket)
        .filter(|t| t.lender == w.lender && t.env == w.env)
        .cloned()
}

/// The load a ticket became, once finished.
async fn ticket_load(w: &Who, t: &Ticket) -> Result<Option<LoadRow>, Response> {
    let (lender, t) = (w.lender.clone(), t.clone());
    Ok(with_store(w, move |s| {
        let (_, rows) = s.console_loads(&lender, &t.name, 0, 50)?;
        Ok(rows.into_iter().rev().find(|l| {
            l.pickup_name == t.name && l.dry_run == t.dry_run && l.started_at >= t.at && l.finished
        }))
    })
    .await?
    .flatten())
}

async fn ticket_status(
    State(c): State<Arc<Console>>,
    UrlPath((env, ticket)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(t) = ticket_of(&c, &w, &ticket) else {
        return not_found();
    };
    match ticket_load(&w, &t).await {
        Err(r) => r,
        Ok(None) => Json(serde_json::json!({ "state": "waiting", "name": t.name })).into_response(),
        Ok(Some(l)) => Json(serde_json::json!({
            "state": "done",
            "load": l.id,
            "url": load_href(&env, l.id),
            "html": load_summary(&env, &l).into_string(),
        }))
        .into_response(),
    }
}

async fn ticket_page(
    State(c): State<Arc<Console>>,
    UrlPath((env, ticket)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(t) = ticket_of(&c, &w, &ticket) else {
        return not_found();
    };
    match ticket_load(&w, &t).await {
        Err(r) => r,
        Ok(Some(l)) => Redirect::to(&load_href(&env, l.id)).into_response(),
        Ok(None) => html_page(views::page(
            "File queued",
            w.nav("upload"),
            html! {
                p { (t.name) " is queued" @if t.dry_run { " for validation" } "." }
                div #outcome role="status" aria-live="polite" data-status=(format!("/console/{env}/uploads/{ticket}/status")) {
                    p { "Waiting for the load to finish. " a href=(format!("/console/{env}/uploads/{ticket}")) { "Check again" } }
                }
            },
        )),
    }
}

async fn downloads(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(lender) = w.cfg.lender(&w.lender) else {
        return not_found();
    };
    let tables = crate::lookups::tables(&w.cfg, lender);
    let base = format!("/console/{env}/downloads");
    let body = html! {
        p { "The same files are in " code { "/" (env) "/import/lookups/" } " over SFTP." }
        h2 { "Templates and schemas" }
        div.scroll tabindex="0" { table {
            caption { "One row per record type" }
            thead { tr { th scope="col" { "Type" } th scope="col" { "CSV template" } th scope="col" { "JSON example" } th scope="col" { "JSON Schema" } } }
            tbody { @for k in Kind::ALL {
                @let p = k.prefix();
                tr {
                    th scope="row" { (p) }
                    td { a href=(format!("{base}/{p}.csv")) download { (p) ".csv" } }
                    td { a href=(format!("{base}/{p}.example.json")) download { (p) ".example.json" } }
                    td { a href=(format!("{base}/{p}.schema.json")) download { (p) ".schema.json" } }
                }
            } }
        } }
        h2 { "Lookups" }
        ul.downloads { @for t in &tables {
            li { (t.name) ": "
                a href=(format!("{base}/{}.csv", t.name)) download { "CSV" } " · "
                a href=(format!("{base}/{}.json", t.name)) download { "JSON" } }
        } }
    };
    html_page(views::page("Templates & lookups", w.nav("downloads"), body))
}

async fn download(
    State(c): State<Arc<Console>>,
    UrlPath((env, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(lender) = w.cfg.lender(&w.lender) else {
        return not_found();
    };
    use crate::templates as t;
    let mut content = None;
    for k in Kind::ALL {
        let p = k.prefix();
        if name == format!("{p}.csv") {
            content = Some(t::template_csv(k));
        } else if name == format!("{p}.example.json") {
            content = Some(t::example_json(k));
        } else if name == format!("{p}.schema.json") {
            content = Some(t::schema_text(k));
        }
    }
    if content.is_none() {
        for tb in crate::lookups::tables(&w.cfg, lender) {
            if name == format!("{}.csv", tb.name) {
                content = Some(crate::lookups::to_csv(&tb));
            } else if name == format!("{}.json", tb.name) {
                content = Some(crate::lookups::to_json(&tb));
            }
        }
    }
    match content {
        Some(body) => (
            [
                (header::CONTENT_TYPE, mime_of(&name).to_string()),
                (header::CONTENT_DISPOSITION, attachment(&name)),
            ],
            body,
        )
            .into_response(),
        None => not_found(),
    }
}

/// Host and port lenders connect to, from `[console] public_host` or the listen address.
fn sftp_endpoint(cfg: &Config, headers: &HeaderMap) -> (String, String) {
    let port = cfg
        .sftp
        .listen
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "22".into());
    let host = cfg.console.public_host.clone().unwrap_or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(h, |(host, _)| host)
                    .to_string()
            })
            .unwrap_or_else(|| "localhost".into())
    });
    (host, port)
}

async fn connect(
    State(c): State<Arc<Console>>,
    UrlPath(env): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let w = match who(&c, &headers, &env) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (host, port) = sftp_endpoint(&w.cfg, &headers);
    let user = &w.lender;
    let api = w.cfg.console.api_base_url.clone().unwrap_or_else(|| {
        let h = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{h}")
    });
    let clients: Vec<String> = w
        .cfg
        .lender(&w.lender)
        .map(|l| l.api_clients.iter().map(|c| c.client_id.clone()).collect())
        .unwrap_or_default();
    let client = clients.first().map_or("CLIENT_ID", String::as_str);
    let token_cmd = format!(
        "TOKEN=$(curl -s -u '{client}:SECRET' -d grant_type=client_credentials {api}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    let submit_cmd = format!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' --data-binary @employees.json {api}/v1/{env}/loads/employees"
    );
    let sftp_cmd = format!("sftp -P {port} {user}@{host}");
    let put_cmd = format!(
        "echo 'put employees.csv /{env}/import/pickup/' | sftp -b - -P {port} {user}@{host}"
    );
    let known = format!("ssh-keyscan -p {port} {host} | ssh-keygen -lf -");
    let body = html! {
        h2 { "SFTP" }
        dl.meta {
            div { dt { "Host" } dd { (host) } }
            div { dt { "Port" } dd { (port) } }
            div { dt { "User" } dd { (user) } }
            div { dt { "Host key fingerprint" } dd { code #fp { (c.host_fingerprint) } " " (views::copy_button("fp")) } }
            div { dt { "Upload folder" } dd { code { "/" (env) "/import/pickup/" } } }
            div { dt { "Validation folder" } dd { code { "/" (env) "/import/validate/" } } }
        }
        p { "Connect (check that the fingerprint your client shows is the one above):" }
        pre tabindex="0" { code #cmd-sftp { (sftp_cmd) } } (views::copy_button("cmd-sftp"))
        p { "Upload a file in one command:" }
        pre tabindex="0" { code #cmd-put { (put_cmd) } } (views::copy_button("cmd-put"))
        p { "Show the server's fingerprint:" }
        pre tabindex="0" { code #cmd-scan { (known) } } (views::copy_button("cmd-scan"))
        h2 { "API" }
        dl.meta {
            div { dt { "Base URL" } dd { code #api { (api) } " " (views::copy_button("api")) } }
            div { dt { "Client ids" } dd {
                @if clients.is_empty() { "none yet (ask your operator)" } @else { (clients.join(", ")) }
            } }
        }
        p { "Get a token (OAuth2 client credentials), then submit a JSON file:" }
        pre tabindex="0" { code #cmd-token { (token_cmd) } } (views::copy_button("cmd-token"))
        pre tabindex="0" { code #cmd-submit { (submit_cmd) } } (views::copy_button("cmd-submit"))
        p { "The full description is at " a href=(format!("{api}/openapi.json")) { (api) "/openapi.json" } "." }
    };
    html_page(views::page("Connection details", w.nav("connect"), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checked_before_queueing() {
        assert!(check_name("employees.csv").is_ok());
        assert!(check_name("loans_march.json").is_ok());
        assert!(check_name(".employees.csv").is_err());
        assert!(check_name("employees.txt").is_err());
        assert!(check_name("stuff.json").is_err());
        assert!(check_name("a/employees.json").is_err());
        assert_eq!(problem_field("Email: \"x\" is not valid"), Some("Email"));
        assert_eq!(
            problem_field("No loan for supplied Loan_Number exists"),
            None
        );
        assert_eq!(
            attachment("a b\"c.csv"),
            "attachment; filename=\"a_b_c.csv\""
        );
    }
}
