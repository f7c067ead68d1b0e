//! The `vigil` binary: parses the command line, starts telemetry, and calls into the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil::config::{Config, Overrides};
use vigil::inference::ExplainPolicy;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Scores and explains security events at ingest time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the scoring API (embedded defaults when no --config is given).
    Serve {
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on, overriding the configuration.
        #[arg(long, env = "VIGIL_LISTEN")]
        listen: Option<String>,
        /// Model folders, overriding the configuration (repeatable).
        #[arg(long = "models")]
        models: Vec<PathBuf>,
    },
    /// Score NDJSON documents from FILE (or stdin) and write enriched NDJSON to stdout.
    Score {
        #[arg(long)]
        model: String,
        file: Option<PathBuf>,
        #[arg(long = "models", default_value = "models")]
        models: Vec<PathBuf>,
        /// Explain every document, not only those above the bundle's min_score.
        #[arg(long)]
        explain_all: bool,
        /// Documents per scoring batch.
        #[arg(long, default_value_t = 512)]
        batch: usize,
    },
    /// Model bundle tools.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Validate a configuration file and print every problem at once.
    CheckConfig { file: Option<PathBuf> },
    /// Install index templates, ingest pipelines (where the cluster supports them) and, with
    /// --kibana, Kibana assets; idempotent, refuses to downgrade.
    Setup {
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// Folder holding mappings/, pipelines/ and kibana/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Kibana base URL; imports kibana/ (saved objects, detection rules) with the
        /// Elasticsearch credentials from the configuration.
        #[arg(long)]
        kibana: Option<url::Url>,
        /// URL at which Elasticsearch reaches Vigil, for pipelines/_inference endpoints.
        #[arg(long)]
        vigil_url: Option<url::Url>,
        /// Environment variable holding the token Elasticsearch presents to Vigil
        /// (default: the first of the configuration's auth tokens).
        #[arg(long)]
        vigil_token_env: Option<String>,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Detection rules: validate them, or run them once.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate every rule file in DIR (default: [rules] dir, else `rules`) and run each rule's
    /// example events through it; non-zero exit on any problem.
    Check {
        dir: Option<PathBuf>,
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the Kibana detection-rule NDJSON promoting these rules' alerts
    /// (the committed copy is kibana/detection-rules.ndjson).
    Kibana {
        dir: Option<PathBuf>,
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run every due rule once against Elasticsearch (checkpoints and leases as the scheduler
    /// does), then the risk job, and print one line per rule.
    Run {
        /// Required: there is no other mode yet; the scheduler runs inside `vigil serve`.
        #[arg(long)]
        once: bool,
        #[arg(long, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// Rules folder, overriding the configuration.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Pretend it is this time (RFC 3339), for replaying a period.
        #[arg(long)]
        now: Option<String>,
        /// Only this rule (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Load and check bundles (hash, width, golden outputs); non-zero exit if any is refused.
    Check { dirs: Vec<PathBuf> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = vigil::telemetry::logs::init_from_env() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Serve {
            config,
            listen,
            models,
        } => serve(
            config,
            Overrides {
                listen,
                model_paths: models,
                ..env_overrides()
            },
        ),
        Command::Score {
            model,
            file,
            models,
            explain_all,
            batch,
        } => score(&model, file, models, explain_all, batch.max(1)),
        Command::Models {
            command: ModelsCommand::Check { dirs },
        } => check_models(dirs),
        Command::Setup {
            config,
            root,
            kibana,
            vigil_url,
            vigil_token_env,
            dry_run,
        } => setup(config, root, kibana, vigil_url, vigil_token_env, dry_run),
        Command::Rules {
            command: RulesCommand::Check { dir, config },
        } => rules_check(dir, config),
        Command::Rules {
            command: RulesCommand::Kibana { dir, config },
        } => rules_kibana(dir, config),
        Command::Rules {
            command:
                RulesCommand::Run {
                    once,
                    config,
                    dir,
                    now,
                    rules,
                },
        } => rules_run(once, config, dir, now, rules),
        Command::CheckConfig { file } => match Config::load(file.as_deref(), &env_overrides()) {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Overrides every command takes from the environment: `VIGIL_ES_URL` points Vigil at another
/// Elasticsearch without editing the configuration (the demo and the tests use it).
fn env_overrides() -> Overrides {
    Overrides {
        es_url: std::env::var("VIGIL_ES_URL").ok().filter(|s| !s.is_empty()),
        ..Overrides::default()
    }
}

fn serve(config: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    let config = match Config::load(config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        match vigil::startup::Application::build(config).await {
            Ok(app) => match app.run_until(vigil::startup::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("server error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("cannot start: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn setup(
    config: Option<PathBuf>,
    root: PathBuf,
    kibana: Option<url::Url>,
    vigil_url: Option<url::Url>,
    vigil_token_env: Option<String>,
    dry_run: bool,
) -> ExitCode {
    use vigil::setup;
    let config = match Config::load(config.as_deref(), &env_overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let assets = match setup::load(&root) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let vigil_token = match vigil_token_env {
        Some(var) => match std::env::var(&var) {
            Ok(t) => Some(vigil::config::Secret::new(t.trim())),
            Err(_) => {
                eprintln!("--vigil-token-env: environment variable [{var}] is not set");
                return ExitCode::from(2);
            }
        },
        None => config.auth.tokens.first().cloned(),
    };
    let clients = vigil::es::client(&config.elasticsearch).and_then(|es| {
        let http = match &kibana {
            Some(_) => Some(vigil::es::http_client(&config.elasticsearch)?),
            None => None,
        };
        Ok((es, http))
    });
    let (es, http) = match clients {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let options = setup::Options {
        kibana: kibana.zip(http).map(|(url, http)| setup::KibanaTarget {
            url,
            authorization: vigil::es::authorization(&config.elasticsearch),
            http,
        }),
        vigil_url,
        vigil_token,
        dry_run,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(setup::apply(&es, &assets, &options)) {
        Ok(report) => {
            if dry_run {
                println!("dry run: nothing was changed; this is what setup would do");
            }
            for change in &report.changes {
                if dry_run {
                    println!("(dry run) {change}");
                } else {
                    println!("{change}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn score(
    model: &str,
    file: Option<PathBuf>,
    models: Vec<PathBuf>,
    explain_all: bool,
    batch: usize,
) -> ExitCode {
    let registry = vigil::bundle::ModelRegistry::new(models);
    let report = registry.reload();
    let Some(bundle) = registry.get(model) else {
        eprintln!("no model named [{model}] is loaded");
        for r in report.refused {
            eprintln!("  refused {}: {}", r.dir, r.reason);
        }
        return ExitCode::from(2);
    };
    let input: Box<dyn BufRead> = match &file {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("cannot open {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let policy = if explain_all {
        ExplainPolicy::All
    } else {
        ExplainPolicy::AboveMinScore
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    let mut total = 0usize;
    let mut pending: Vec<(usize, String)> = Vec::with_capacity(batch);
    let flush = |pending: &mut Vec<(usize, String)>,
                 out: &mut dyn Write,
                 failed: &mut usize|
     -> std::io::Result<()> {
        let docs: Vec<&str> = pending.iter().map(|(_, line)| line.as_str()).collect();
        let answers = vigil::http::score::score_raw(&registry, &bundle, &docs, policy, false);
        for ((line, _), answer) in pending.iter().zip(answers) {
            match answer {
                Ok(doc) => {
                    out.write_all(&doc)?;
                    out.write_all(b"\n")?;
                }
                Err(error) => {
                    *failed += 1;
                    writeln!(out, "{}", serde_json::json!({"error": error, "line": line}))?;
                }
            }
        }
        pending.clear();
        Ok(())
    };
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot read input: {e}");
                return ExitCode::from(2);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        pending.push((i + 1, line));
        if pending.len() >= batch {
            if let Err(e) = flush(&mut pending, &mut out, &mut failed) {
                eprintln!("cannot write output: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = flush(&mut pending, &mut out, &mut failed).and_then(|_| out.flush()) {
        eprintln!("cannot write output: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "scored {} of {total} documents with {} {} ({failed} failed)",
        total - failed,
        bundle.name(),
        bundle.version()
    );
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_models(dirs: Vec<PathBuf>) -> ExitCode {
    if dirs.is_empty() {
        eprintln!("usage: vigil models check DIR...");
        return ExitCode::from(2);
    }
    let registry = vigil::bundle::ModelRegistry::new(dirs);
    let report = registry.reload();
    for m in &report.loaded {
        let b = registry.get(&m.name).expect("just loaded");
        println!(
            "ok       {} {} ({} features, {}, explanations: {}, golden max |diff| {})",
            m.name,
            m.version,
            b.n_features(),
            b.engine.kind(),
            b.explainer.as_ref().map_or("none", |e| e.method()),
            b.golden_max_diff
                .map_or("n/a".to_string(), |d| format!("{d:.1e}")),
        );
    }
    for r in &report.refused {
        println!("refused  {}: {}", r.dir, r.reason);
    }
    if report.refused.is_empty() && !report.loaded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn load_rules(
    dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<Vec<vigil::rules::Rule>, ExitCode> {
    let (dir, defaults) = match (dir, Config::load(config.as_deref(), &env_overrides())) {
        (Some(d), Ok(c)) => (d, c.rules.defaults),
        (None, Ok(c)) => (c.rules.dir, c.rules.defaults),
        (_, Err(e)) => {
            eprintln!("{e}");
            return Err(ExitCode::from(2));
        }
    };
    vigil::rules::load_dir(&dir, &defaults).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn rules_kibana(dir: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    match load_rules(dir, config) {
        Ok(rules) => {
            print!("{}", vigil::rules::kibana::detection_rules_ndjson(&rules));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn rules_check(dir: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let rules = match load_rules(dir, config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut failed = 0;
    for rule in &rules {
        let outcomes = vigil::rules::eval::check_examples(rule);
        let bad: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
        if bad.is_empty() {
            println!(
                "ok       {} ({}, {} example(s))",
                rule.id,
                rule.kind.name(),
                outcomes.len()
            );
        } else {
            failed += 1;
            for o in bad {
                println!(
                    "FAILED   {}: {}: example [{}]: expected alerts for {:?}, got {:?} {:?}",
                    rule.file.display(),
                    o.rule,
                    o.example,
                    o.expected,
                    o.got,
                    o.reasons
                );
            }
        }
    }
    println!("{} rule(s), {failed} failing", rules.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn rules_run(
    once: bool,
    config: Option<PathBuf>,
    dir: Option<PathBuf>,
    now: Option<String>,
    only: Vec<String>,
) -> ExitCode {
    if !once {
        eprintln!("usage: vigil rules run --once [--config F] [--dir D] [--now T] [--rule ID]...; the scheduler itself runs inside `vigil serve` with [rules] enabled = true");
        return ExitCode::from(2);
    }
    let config = match Config::load(config.as_deref(), &env_overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let now = match now
        .as_deref()
        .map(|t| vigil::rules::doc::parse_time(&serde_json::json!(t)))
    {
        None => chrono::Utc::now(),
        Some(Some(t)) => t,
        Some(None) => {
            eprintln!("--now: not an RFC 3339 time");
            return ExitCode::from(2);
        }
    };
    let dir = dir.unwrap_or_else(|| config.rules.dir.clone());
    let mut rules = match vigil::rules::load_dir(&dir, &config.rules.defaults) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !only.is_empty() {
        rules.retain(|r| only.contains(&r.id));
        if rules.len() != only.len() {
            eprintln!("unknown rule id among {only:?}");
            return ExitCode::from(2);
        }
    }
    let client = match vigil::es::client(&config.elasticsearch) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut settings = config.rules.engine_settings();
    settings.refresh = "wait_for".into();
    let engine =
        vigil::rules::scheduler::Engine::new(vigil::rules::esapi::Es::new(client), rules, settings);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let mut failed = 0;
        for r in engine.run_due(now).await {
            match (&r.error, &r.skipped) {
                (Some(e), _) => {
                    failed += 1;
                    println!("error    {}: {e}", r.rule);
                }
                (None, Some(why)) => println!("skipped  {}: {why}", r.rule),
                (None, None) => println!(
                    "ran      {}: {} window(s), {} alert(s) written, {} already present, {} suppressed, {} event(s) skipped{}",
                    r.rule,
                    r.windows,
                    r.alerts_written,
                    r.alerts_existing,
                    r.suppressed,
                    r.stats.skipped_total(),
                    if r.missed_windows > 0 { format!(", {} missed window(s)", r.missed_windows) } else { String::new() }
                ),
            }
        }
        match vigil::rules::risk::run_due(&engine, now).await {
            Ok(Some(n)) => println!("risk     {n} user(s) scored"),
            Ok(None) => println!("risk     not due"),
            Err(e) => {
                failed += 1;
                println!("error    risk: {e}");
            }
        }
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
