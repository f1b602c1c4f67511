//! Command-line definitions (clap) of every subcommand. Only parsing lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "callmgr",
    version,
    about = "Outbound-call campaign manager: durable queue, retry windows, calling hours, concurrency slots, one binary",
    after_help = "Exit codes: 0 success; 1 failure; 2 bad configuration or usage; 3 the service cannot start \
                  (store held by another process, data directory not writable, address in use); 70 a storage \
                  failure while serving. `callmgr help SUBCOMMAND` or `man callmgr-SUBCOMMAND` for details."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The service configuration file.
    #[arg(long, env = "CALLMGR_CONFIG", default_value = "config/callmgr.yaml")]
    pub config: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Base URL of a running callmgr.
    #[arg(long, env = "CALLMGR_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// API token (X-Auth-Token).
    #[arg(long, env = "X_AUTH_TOKEN", default_value = "dev-token-12345", hide_default_value = true)]
    pub token: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service (API, scheduler, workers) in the foreground.
    ///
    /// It holds the terminal: use a second one for the API, `callmgr tui` or `callmgr import`.
    /// SIGTERM or Ctrl-C drains and stops; SIGHUP reloads the retry rules and the tokens.
    Serve(ConfigArg),
    /// Validate the configuration and retry rules; print the effective settings.
    ///
    /// Tokens are masked. Exit 0: valid; 2: not (the message names the key and the problem).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Average seconds a call holds its slot (ring + talk), for the capacity estimate.
        #[arg(long, default_value_t = 45.0)]
        avg_call_seconds: f64,
        /// Also explain this number: the timezone it gets and why, the calling hours that apply
        /// and whether it could be dialled now (repeat for several numbers).
        #[arg(long)]
        phone: Vec<String>,
        /// The campaign whose calling hours apply to --phone (its own timezone is not known
        /// offline; `retry-plan` asks the running service for it).
        #[arg(long, default_value_t = 1)]
        campaign: u64,
    },
    /// Run a stand-in telephony provider that answers dial requests and sends callbacks.
    MockProvider(MockProviderArgs),
    /// Explain when a call would be retried.
    ///
    /// Rules come from the config files; the campaign's
    /// timezone and attempt budget, and the number's timezone (--phone), come from the running
    /// service's API when it answers (otherwise the rules file's defaults apply, and it says so).
    RetryPlan(RetryPlanCliArgs),
    /// Load generators and store seeding, for the benchmarks.
    ///
    /// Each starts its own server (and mock provider) unless --url is given.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Live dashboard of a running service.
    ///
    /// Slots, queue, rates, outcomes, provider health,
    /// campaigns (why each one's calls wait), a campaign's calls and the dead letters; pause,
    /// resume and stop campaigns, replay dead letters (? lists the keys). NO_COLOR turns colours
    /// off. Exit 0 after q; 2 when the service refuses the token; 128 + N after signal N (the
    /// terminal is restored).
    Tui(TuiCliArgs),
    /// Load phone numbers from a CSV file into a campaign (or the do-not-call list).
    ///
    /// With --dnc the numbers go onto the do-not-call list. Loads in batches, with progress and a
    /// rejects file (FILE.rejects.csv: each rejected row
    /// as it was, after its line and reason; fix it and import it again). Exit 0: all loaded or
    /// already present; 1: some rows rejected; 2: usage error (missing file, unknown campaign,
    /// service unreachable, bad token).
    Import(ImportCliArgs),
    /// Write a consistent backup of the store, online or offline.
    ///
    /// Online, it asks the service (POST
    /// /api/v1/admin/backup/), which writes the file on its own disk. With --data-dir, copies a
    /// stopped store directly (refused while a service holds it). Exit 0: written; 1: refused
    /// or failed (nothing is left behind); 2: usage.
    Backup(BackupCliArgs),
    /// Put a backup in place as a stopped service's store.
    ///
    /// The file is checked first (it opens,
    /// its schema is not newer than this build, every record decodes, every index agrees with
    /// the records) and what it holds is printed; only then is it copied in, and the store it
    /// replaces is kept as callmgr.redb.replaced-TIMESTAMP. Exit 0: restored; 1: refused (a
    /// service holds the store, or the file is not a whole, consistent store): nothing
    /// changed; 2: usage.
    Restore(RestoreCliArgs),
    /// Return the space that purged calls freed to the file system (stopped service).
    ///
    /// redb compaction of a stopped service's store; prints the size before and after. Refused while a service
    /// holds the store.
    Compact(CompactCliArgs),
    /// Print the shell completion script for SHELL.
    ///
    /// The .deb installs bash, zsh and fish ones;
    /// elsewhere, e.g.: callmgr completions bash > ~/.local/share/bash-completion/completions/callmgr
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (roff) into a folder.
    ///
    /// callmgr.1 and callmgr-SUBCOMMAND.1 for every subcommand. The .deb installs them (`man callmgr`, `man callmgr-import`).
    Man {
        /// The folder to write them into (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BackupCliArgs {
    /// Where to write the backup. Through the service: a path on the service's machine
    /// (relative paths are inside its data_dir; default {data_dir}/backups/callmgr-TIMESTAMP.redb).
    /// With --data-dir: a path here (required).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Copy the stopped store in this data directory directly instead of asking a service.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base URL of the running callmgr.
    #[arg(long, env = "CALLMGR_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// API token (X-Auth-Token) with the admin role.
    #[arg(long, env = "X_AUTH_TOKEN", default_value = "dev-token-12345", hide_default_value = true)]
    pub token: String,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreCliArgs {
    /// The backup file to put in place.
    pub file: PathBuf,
    /// The stopped service's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CompactCliArgs {
    /// The stopped service's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ImportCliArgs {
    /// The CSV file, or - for standard input: a header row naming the phone column (phone,
    /// phone_number or number), or no header and the numbers in the first column. Other columns
    /// are ignored, so a fixed rejects file imports as it is.
    pub file: PathBuf,
    /// Campaign id that receives the numbers (with --dnc: whose do-not-call list; without it the
    /// list is global).
    #[arg(long, required_unless_present = "dnc")]
    pub campaign: Option<u64>,
    /// Load the numbers onto the do-not-call list (POST /api/v1/dnc/) instead of a campaign:
    /// their waiting calls are cancelled and they are never dialled.
    #[arg(long)]
    pub dnc: bool,
    /// With --dnc: the reason kept with each entry.
    #[arg(long, requires = "dnc")]
    pub reason: Option<String>,
    /// Header of the phone column, if it is not phone, phone_number or number.
    #[arg(long)]
    pub column: Option<String>,
    /// Header of a column with each number's IANA timezone (default: a column named timezone).
    #[arg(long, conflicts_with = "dnc")]
    pub timezone_column: Option<String>,
    /// Field delimiter: , ; | or \t (tab). Default: ; or tab when the first line has more of
    /// them than commas, else ,.
    #[arg(long, value_parser = crate::tools::import::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Two-letter region (e.g. GB) for numbers written without +country code. The service
    /// parses the numbers with the campaign's default region; this sets it when the campaign has
    /// none (and says so), and leaves a region the campaign already has.
    #[arg(long, value_name = "XX")]
    pub region: Option<String>,
    /// Where to write the rejected rows (default: FILE.rejects.csv; stdin.rejects.csv for -).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Rows per request (at most the service's limits.batch_max, 10000 by default).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MockProviderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Send every callback here instead of the `callback_url` in each request.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Token sent with callbacks (X-Auth-Token).
    #[arg(long, env = "X_AUTH_TOKEN", default_value = "dev-token-12345", hide_default_value = true)]
    pub token: String,
    /// Delay before each callback, uniform in A..B milliseconds (or one value; units like `2s` also work).
    #[arg(long, default_value = "1000..10000")]
    pub delay_ms: String,
    /// Outcome mix as STATUS=WEIGHT pairs.
    #[arg(long, default_value = "PICKED=70,DISCONNECTED=15,RNR=10,FAILED=5")]
    pub mix: String,
    /// Seed for reproducible outcomes and delays.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which provider to play: callmgr's JSON webhook, or the Twilio REST API (signed status callbacks).
    #[arg(long, default_value = "webhook", value_parser = ["webhook", "twilio"])]
    pub protocol: String,
    /// Twilio: the account SID that Basic auth and the request paths must name.
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    pub account_sid: String,
    /// Twilio: the auth token (Basic auth password, and the key of X-Twilio-Signature). Required with --protocol twilio.
    #[arg(long)]
    pub auth_token: Option<String>,
    /// Webhook: sign callbacks with X-Callmgr-Signature (HMAC-SHA256 of the body) using this secret.
    #[arg(long)]
    pub callback_secret: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RetryPlanCliArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Campaign id.
    #[arg(long)]
    pub campaign: u64,
    /// Instant of the outcome, RFC 3339 (e.g. 2026-11-21T15:07:23Z).
    #[arg(long)]
    pub at: String,
    /// The outcome: PICKED, DISCONNECTED, RNR or FAILED.
    #[arg(long)]
    pub status: String,
    /// The attempt that ended (1 for the first dial).
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// The callee's number, to use its own timezone from the campaign's list.
    #[arg(long)]
    pub phone: Option<String>,
    /// Use this IANA timezone for the callee instead.
    #[arg(long)]
    pub timezone: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TuiCliArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Time between polls of the service (e.g. `500ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = crate::tools::tui::parse_interval)]
    pub interval: std::time::Duration,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable `initiate-call/` throughput and latency (its campaign is paused: nothing is dialled).
    Initiate {
        /// A running callmgr to drive instead of starting one.
        #[arg(long)]
        url: Option<String>,
        /// API token of the service given with --url (X-Auth-Token).
        #[arg(long, env = "X_AUTH_TOKEN", default_value = "dev-token-12345", hide_default_value = true)]
        token: String,
        /// Concurrent connections, each sending one request at a time.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Total requests per second (open loop, latency from the intended send time); omit for closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// How long to send, with a unit (e.g. 10s, 2m).
        #[arg(long, default_value = "10s")]
        duration: String,
    },
    /// Calls completed per second through the whole lifecycle, against `serve` + a zero-delay `mock-provider`.
    E2e {
        /// Calls to put through the whole lifecycle.
        #[arg(long, default_value_t = 100_000)]
        calls: u64,
        /// Keep feeding for this long (e.g. 5m) and sample the server's memory every 10 s.
        #[arg(long)]
        duration: Option<String>,
        /// Concurrent feeders sending bulk-initiate-calls requests.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Numbers per bulk-initiate-calls request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// The started service's max_concurrent_calls (slots).
        #[arg(long, default_value_t = 2000)]
        max_concurrent_calls: u32,
        /// The started service's dial workers.
        #[arg(long, default_value_t = 32)]
        workers: usize,
        /// The provider protocol: callmgr's webhook, or the Twilio REST API with signed status callbacks.
        #[arg(long, default_value = "webhook", value_parser = ["webhook", "twilio"])]
        protocol: String,
    },
    /// Fill a store with synthetic calls (made by the state machine, written by the store's own
    /// code), for the boot and scale benchmarks. The service must not be running on it.
    Seed {
        /// Data directory of the store (created if missing; calls are added to what is there).
        #[arg(long)]
        data_dir: PathBuf,
        /// Calls to write.
        #[arg(long, default_value_t = 1_000_000)]
        calls: u64,
        /// `retrying` (every call waits for a retry within a week) or `finished` (final calls
        /// spread over the last --days days).
        #[arg(long, default_value = "finished")]
        shape: String,
        /// With --shape finished: the days over which the final calls are spread.
        #[arg(long, default_value_t = 100)]
        days: u32,
        /// Open the store with redb's quick-repair.
        #[arg(long)]
        quick_repair: bool,
    },
    /// Time to /readyz and memory with N calls waiting for a retry, after a clean stop and after SIGKILL.
    Boot {
        /// Calls waiting for a retry written into the store before the boots are timed.
        #[arg(long, default_value_t = 1_000_000)]
        retrying: u64,
        /// Open the store with redb's quick-repair (faster recovery after a crash, slower commits).
        #[arg(long)]
        quick_repair: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every flag and argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_a_description() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the subcommand)", sub.get_name()));
                }
                check(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "callmgr", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
        Cli::command().debug_assert();
    }
}
