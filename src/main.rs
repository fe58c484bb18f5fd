//! The `bulkload` binary: argument parsing, logging setup and exit codes. All behaviour lives in
//! the library; this file must not hold any.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkload::config::{Config, LogFormat};
use bulkload::files::{run_pass, PassOptions};

#[derive(Parser)]
#[command(
    name = "bulkload",
    version,
    about = "SFTP drop-box and batch importer for lender bulk data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one pass now over every lender and environment, then exit.
    Run {
        /// Config file (default: the embedded config.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override [schedule] settle_seconds for this pass (0 takes every file now).
        #[arg(long)]
        settle_seconds: Option<u64>,
    },
    /// Validate pickup files (JSON or CSV) offline (no store, nothing moved) and print their
    /// problems.
    Check {
        /// Config file, for division, lookup and position checks (needs --lender).
        #[arg(long, short, requires = "lender", conflicts_with = "lookups")]
        config: Option<PathBuf>,
        /// Lender whose divisions and positions apply.
        #[arg(long, requires = "config")]
        lender: Option<String>,
        /// A downloaded lookups/ folder: division, lookup and position checks without the
        /// operator's config (for lenders).
        #[arg(long, value_name = "DIR")]
        lookups: Option<PathBuf>,
        /// `text` (a summary for people) or `json` (one JSON document); default: text on a
        /// terminal, json otherwise.
        #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
        format: Option<String>,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the daemon: the SFTP server lenders connect to, and passes on schedule.
    Serve {
        /// Config file (default: the embedded config.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Read a password from standard input and print its argon2 hash for `password_hash`.
    Passwd,
    /// Move SQLite stores into PostgreSQL (stop the daemons first): each environment's file
    /// into its schema, which must be empty. The password comes from --password-file or
    /// BULKLOAD_STORE_PASSWORD.
    Migrate {
        /// `sqlite:PATH`: one store file (`<environment>.sqlite3`) or the folder holding them
        /// (`data_dir/db`).
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// `postgres://user@host:port/database` (no password in it).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The environment of a single file whose name is not `<environment>.sqlite3`.
        #[arg(long)]
        environment: Option<String>,
        /// A file holding the PostgreSQL password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Print the JSON Schema (2020-12) of one record of TYPE (as lookups/schemas/ holds it).
    Schema {
        /// A record type: employees, partners, borrowers, ... (a file prefix).
        #[arg(value_name = "TYPE")]
        kind: String,
    },
    /// Print the template of TYPE: an example JSON file, or with --csv the CSV header and an
    /// example row (as lookups/templates/ holds them).
    Template {
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The CSV template instead of the JSON one.
        #[arg(long)]
        csv: bool,
    },
    /// Per environment and lender: files waiting, the last load, notifications pending; the next
    /// scheduled pass and whether a pass is running.
    Status {
        /// Config file (default: the embedded config.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (for scripts) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config without starting anything; warn about what will surprise later.
    /// Exits 0 when valid without warnings, 1 with warnings, 2 when invalid.
    Check {
        /// Config file (default: the embedded config.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded()?,
    })
}

fn init_logs(default: &str) {
    init_logs_as(default, LogFormat::Text)
}

/// `[log] format`: text, or JSON lines carrying every structured field (lender, env, file,
/// load, address, ...) at the top level.
fn init_logs_as(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        // Colours only on a terminal: journald and log files get plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The error and its causes, leaving out a cause whose text the message before it already holds.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn main() -> ExitCode {
    bulkload::store::sqlite::configure_library();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bulkload: error: {}", describe(&e));
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            settle_seconds,
        } => {
            let cfg = load_config(config.as_ref())?;
            init_logs_as("warn", cfg.log.format);
            let settle = Duration::from_secs(settle_seconds.unwrap_or(cfg.schedule.settle_seconds));
            let opts = PassOptions {
                settle,
                progress: true,
                stop: None,
                queue: None,
                ..Default::default()
            };
            // A closed stdout (`bulkload run | head -1`) must not stop the pass: println! would
            // panic after the first file. Summaries are best effort; the logs and results are not.
            let mut out = std::io::stdout();
            let summary = run_pass(&cfg, &opts, &mut |ev| {
                let _ = writeln!(out, "{}", ev.summary());
            })
            .context("the pass could not complete")?;
            // No daemon here: notifications due are tried once now (the next run or a daemon
            // retries what is left).
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(bulkload::notify::deliver_due_once(&cfg));
            }
            let _ = writeln!(
                out,
                "pass complete: {} file(s) processed, {} blank file(s) discarded, {} skipped",
                summary.files, summary.discarded, summary.skipped
            );
            if summary.unsettled > 0 {
                let _ = writeln!(
                    out,
                    "{} file(s) left for a later pass: younger than the settle time ({} s), or after such a file in dependency order",
                    summary.unsettled,
                    settle.as_secs()
                );
            }
            // 1: the pass went through but left files or lenders for the next one (the log and
            // the lines above say why); 2 (an error): it could not complete.
            Ok(if summary.skipped > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check {
            config,
            lender,
            lookups,
            format,
            files,
        } => {
            init_logs("warn");
            let cfg = match &config {
                Some(p) => Some(Config::load(p)?),
                None => None,
            };
            let lender = match (&cfg, &lender) {
                (Some(c), Some(id)) => match c.lender(id) {
                    Some(l) => Some(l),
                    None => bail!("lender {id:?} is not in the config"),
                },
                _ => None,
            };
            let from_lookups = match &lookups {
                Some(dir) => Some(
                    bulkload::check::lookups_context(dir)
                        .with_context(|| format!("cannot read the lookups in {}", dir.display()))?,
                ),
                None => None,
            };
            let ctx = match (&cfg, lender, &from_lookups) {
                (Some(c), Some(l), _) => Some(bulkload::records::Ctx {
                    lender: l,
                    lookups: &c.lookups,
                }),
                (_, _, Some((l, lk))) => Some(bulkload::records::Ctx {
                    lender: l,
                    lookups: lk,
                }),
                _ => None,
            };
            let limits = cfg.as_ref().map(|c| c.limits).unwrap_or_default();
            let bounds = bulkload::input::Bounds {
                max_record_bytes: limits.max_record_bytes,
                max_records: limits.max_records,
            };
            let format = match format.as_deref() {
                Some("json") => bulkload::check::ReportFormat::Json,
                Some(_) => bulkload::check::ReportFormat::Text,
                None if std::io::stdout().is_terminal() => bulkload::check::ReportFormat::Text,
                None => bulkload::check::ReportFormat::Json,
            };
            let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
            let mut out = std::io::stdout().lock();
            let total = bulkload::check::check_files(&paths, ctx, bounds, format, &mut out)
                .context("cannot check the files")?;
            out.flush()?;
            Ok(if total > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Serve { config } => {
            let cfg = load_config(config.as_ref())?;
            init_logs_as("info,tokio_cron_scheduler=warn", cfg.log.format);
            bulkload::status::check_data_dir(&cfg.data_dir).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = rt.block_on(bulkload::serve::serve(cfg, shutdown_signal()));
            // Sessions were already asked to close; do not wait on idle worker threads.
            rt.shutdown_timeout(Duration::from_millis(500));
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { kind } => {
            print!("{}", bulkload::templates::schema_text(parse_kind(&kind)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Template { kind, csv } => {
            let kind = parse_kind(&kind)?;
            if csv {
                print!("{}", bulkload::templates::template_csv(kind));
            } else {
                print!("{}", bulkload::templates::example_json(kind));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => {
            init_logs("warn");
            let cfg = load_config(config.as_ref())?;
            let status = bulkload::status::collect(&cfg);
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &status)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", bulkload::status::render_table(&status))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            init_logs("warn");
            let cfg = load_config(config.as_ref())?;
            bulkload::status::check_data_dir(&cfg.data_dir).map_err(anyhow::Error::msg)?;
            let warnings = bulkload::status::config_warnings(&cfg);
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "config is valid: {} lender(s), {} environment(s), {} warning(s)",
                cfg.lenders.len(),
                cfg.environments.len(),
                warnings.len()
            );
            Ok(if warnings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Migrate {
            from,
            to,
            environment,
            password_file,
        } => {
            let path = from
                .strip_prefix("sqlite:")
                .context("--from must be sqlite:PATH")?;
            let pg = bulkload::config::PgConfig::new(&to, password_file.as_deref(), 30, 1)
                .map_err(|e| anyhow::anyhow!(e.replace("[store] url", "--to")))?;
            let mut sources = bulkload::store::migrate::sources(std::path::Path::new(path))?;
            if let Some(env) = environment {
                anyhow::ensure!(
                    sources.len() == 1,
                    "--environment names the environment of one file, not of a folder"
                );
                sources[0].0 = env;
            }
            anyhow::ensure!(
                !sources.is_empty(),
                "no <environment>.sqlite3 file in {path}"
            );
            // The PostgreSQL client must not run on an async thread: a thread of its own.
            let moved = std::thread::spawn(move || {
                sources
                    .iter()
                    .map(|(env, file)| bulkload::store::migrate::migrate(file, &pg, env))
                    .collect::<Result<Vec<_>, _>>()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("migration thread panicked"))??;
            for m in moved {
                let rows: Vec<String> = m.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
                println!(
                    "{}: moved to schema {}: {}",
                    m.env,
                    bulkload::store::postgres::schema_name(&m.env),
                    rows.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Passwd => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let hash = bulkload::auth::hash_password(line.trim_end_matches(['\r', '\n']))?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_kind(name: &str) -> Result<bulkload::records::Kind> {
    use bulkload::records::Kind;
    match Kind::ALL
        .into_iter()
        .find(|k| k.prefix().eq_ignore_ascii_case(name))
    {
        Some(k) => Ok(k),
        None => bail!(
            "{name:?} is not a record type; the types are {}",
            Kind::ALL.map(Kind::prefix).join(", ")
        ),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
