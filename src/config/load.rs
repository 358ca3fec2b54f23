//! Reading the layers: embedded defaults → main file → environment (through the `config` crate),
//! then one file per channel; then cross-file checks.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{
    Config, ConfigErrors, DEFAULTS, Problem,
    model::ChannelConfig,
    raw::{RawChannel, RawMain},
    secret::SecretDirs,
    tree::deserialize_reporting,
    validate::{self, FileCtx},
};

/// Prefix of environment overrides (`BYOCD__SECTION__KEY`).
pub const ENV_PREFIX: &str = "BYOCD";
/// Separator between the prefix, sections and keys of an environment override.
pub const ENV_SEPARATOR: &str = "__";
/// Set by systemd for `StateDirectory=`.
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";
/// Set by systemd for `LoadCredential=`.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// Top-level keys of the main file that the environment may not set.
const NOT_FROM_ENV: [&str; 1] = ["orgs"];

/// Parses TOML text; a syntax error becomes one problem with its line and column.
fn parse_toml(file: &str, text: &str) -> Result<toml::Table, Problem> {
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        });
        Problem {
            file: file.to_owned(),
            key: format!("{line}:{column}"),
            message: format!("TOML syntax error: {}", e.message().trim()),
        }
    })
}

/// `BYOCD__SERVER__LISTEN` → `server.listen`, for the variables that are overrides.
fn env_overrides(
    env: &[(String, String)],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut keys = BTreeMap::new();
    for (var, _) in env {
        if !var.to_ascii_uppercase().starts_with(&prefix) {
            continue;
        }
        let dotted = var[prefix.len()..]
            .to_lowercase()
            .replace(ENV_SEPARATOR, ".");
        let first = dotted.split('.').next().unwrap_or_default();
        if dotted.is_empty() || dotted.split('.').any(str::is_empty) {
            problems.push(Problem {
                file: format!("env:{var}"),
                key: dotted,
                message: format!("not a setting: write {prefix}SECTION{ENV_SEPARATOR}KEY"),
            });
        } else if NOT_FROM_ENV.contains(&first) {
            problems.push(Problem {
                file: format!("env:{var}"),
                key: dotted.clone(),
                message: "orgs cannot be set from the environment; environment overrides apply to \
                          the main file's settings only"
                    .to_owned(),
            });
        } else {
            keys.insert(dotted, var.clone());
        }
    }
    keys
}

/// Converts the `config` crate's merged tree into a TOML value.
fn to_toml(value: config::Value) -> Option<toml::Value> {
    use config::ValueKind as K;
    Some(match value.kind {
        K::Nil => return None,
        K::Boolean(b) => toml::Value::Boolean(b),
        K::I64(i) => toml::Value::Integer(i),
        K::I128(i) => i64::try_from(i)
            .map_or_else(|_| toml::Value::String(i.to_string()), toml::Value::Integer),
        K::U64(u) => i64::try_from(u)
            .map_or_else(|_| toml::Value::String(u.to_string()), toml::Value::Integer),
        K::U128(u) => i64::try_from(u)
            .map_or_else(|_| toml::Value::String(u.to_string()), toml::Value::Integer),
        K::Float(f) => toml::Value::Float(f),
        K::String(s) => toml::Value::String(s),
        K::Table(t) => toml::Value::Table(
            t.into_iter()
                .filter_map(|(k, v)| to_toml(v).map(|v| (k, v)))
                .collect(),
        ),
        K::Array(a) => toml::Value::Array(a.into_iter().filter_map(to_toml).collect()),
    })
}

/// How a channel file is named in problems: relative to the main file's directory when it is
/// inside it.
fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The `*.toml` files of the channel directory, by name; hidden files are skipped.
fn channel_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.extension().is_some_and(|e| e == "toml") && !name.starts_with('.') && path.is_file()
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    hex::encode(digest)
}

/// Org ids the channels may name: valid ids and the 15-character start of invalid ones (so an
/// 18-character id is reported once, at the org, not again at every channel). `None` when the
/// main file could not be read completely.
fn known_org_ids(tree: &toml::Value) -> Option<BTreeSet<String>> {
    let mut known = BTreeSet::new();
    let Some(orgs) = tree.get("orgs") else {
        return Some(known);
    };
    for org in orgs.as_array()? {
        let id = org.get("org_id")?.as_str()?;
        known.insert(id.to_owned());
        known.insert(id.chars().take(super::model::OrgId::LEN).collect());
    }
    Some(known)
}

pub(crate) fn load_with_env(
    main_file: &Path,
    env: &[(String, String)],
    database_only: bool,
) -> Result<Config, ConfigErrors> {
    let env_var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let main_display = main_file.display().to_string();
    let base = main_file.parent().unwrap_or(Path::new("")).to_path_buf();
    let resolve_base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.clone()
    };
    let secrets = SecretDirs {
        base: resolve_base.clone(),
        credentials: env_var(CREDENTIALS_DIRECTORY)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        database_only,
    };
    let mut problems = Vec::new();
    let fail = |problems: Vec<Problem>| Err(ConfigErrors::new(problems));

    // Layers 1–3: defaults, main file, environment.
    let main_bytes = match std::fs::read(main_file) {
        Ok(bytes) => bytes,
        Err(e) => {
            problems.push(Problem::file(
                &main_display,
                format!("cannot read the main file: {e}"),
            ));
            return fail(problems);
        }
    };
    let main_text = match String::from_utf8(main_bytes.clone()) {
        Ok(text) => text,
        Err(_) => {
            problems.push(Problem::file(&main_display, "is not UTF-8 text"));
            return fail(problems);
        }
    };
    let main_ok = match parse_toml(&main_display, &main_text) {
        Ok(_) => true,
        Err(p) => {
            problems.push(p);
            false
        }
    };
    let env_keys = env_overrides(env, &mut problems);
    let env_source: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| env_keys.values().any(|v| v == k))
        .cloned()
        .collect();
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if main_ok {
        builder = builder.add_source(config::File::from_str(&main_text, config::FileFormat::Toml));
    }
    let merged = builder
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(env_source)),
        )
        .build();
    let tree = match merged {
        Ok(cfg) => to_toml(cfg.cache).unwrap_or(toml::Value::Table(toml::Table::new())),
        Err(e) => {
            problems.push(Problem::file(
                &main_display,
                format!("cannot merge the configuration: {e}"),
            ));
            return fail(problems);
        }
    };
    let known_orgs = if main_ok { known_org_ids(&tree) } else { None };

    let mut ctx = FileCtx::new(main_display.clone(), &secrets);
    ctx.env_keys = env_keys;
    let raw: RawMain = deserialize_reporting(tree, &mut |key, message| ctx.problem(key, message))
        .unwrap_or_default();
    let main = validate::main_file(&mut ctx, raw, &resolve_base, env_var(STATE_DIRECTORY));
    problems.append(&mut ctx.problems);

    // Layer 4: channel files. The default directory may be absent; another one must exist.
    let channels_dir_explicit =
        main.channels_dir != resolve_base.join(validate::DEFAULT_CHANNELS_DIR);
    let mut hasher = Sha256::new();
    hasher.update(&main_bytes);
    let mut channels: Vec<ChannelConfig> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut addresses: BTreeMap<String, String> = BTreeMap::new();
    let files = match channel_files(&main.channels_dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !channels_dir_explicit => Vec::new(),
        Err(e) => {
            problems.push(Problem {
                file: main_display.clone(),
                key: "channels_dir".to_owned(),
                message: format!("cannot read directory {}: {e}", main.channels_dir.display()),
            });
            Vec::new()
        }
    };
    for path in files {
        let display = display_path(&path, &resolve_base);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(Problem::file(&display, format!("cannot read: {e}")));
                continue;
            }
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update([0]);
        hasher.update(file_name.as_bytes());
        hasher.update([0]);
        hasher.update(&bytes);
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            problems.push(Problem::file(&display, "is not UTF-8 text"));
            continue;
        };
        let table = match parse_toml(&display, &text) {
            Ok(table) => table,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut ctx = FileCtx::new(display.clone(), &secrets);
        let raw: RawChannel =
            deserialize_reporting(toml::Value::Table(table), &mut |key, message| {
                ctx.problem(key, message)
            })
            .unwrap_or_default();
        let (keys, channel) = validate::channel(&mut ctx, raw, &stem);
        problems.append(&mut ctx.problems);

        // Cross-file checks.
        if let Some(name) = &keys.name {
            if let Some(other) = names.get(name) {
                problems.push(Problem {
                    file: display.clone(),
                    key: "name".to_owned(),
                    message: format!("channel name `{name}` is already used by {other}"),
                });
            } else {
                names.insert(name.clone(), display.clone());
            }
        }
        if let Some(address) = &keys.address {
            if let Some(other) = addresses.get(address) {
                problems.push(Problem {
                    file: display.clone(),
                    key: "channel_address_identifier".to_owned(),
                    message: format!("channel address `{address}` is already used by {other}"),
                });
            } else {
                addresses.insert(address.clone(), display.clone());
            }
        }
        if let (Some(org_id), Some(known)) = (&keys.org_id, &known_orgs)
            && !known.contains(org_id.as_str())
        {
            problems.push(Problem {
                file: display.clone(),
                key: "org_id".to_owned(),
                message: format!("no org with org_id `{org_id}` is configured in {main_display}"),
            });
        }
        if let Some(mut channel) = channel {
            channel.file = path.clone();
            channel.hash = hex(Sha256::digest(text.as_bytes()));
            channels.push(channel);
        }
    }

    if !problems.is_empty() {
        return fail(problems);
    }
    // Every `None` below was reported as a problem above; this is only a safety net.
    let (Some(server), Some(database), Some(log), Some(relay), Some(pubsub), Some(retention)) = (
        main.server,
        main.database,
        main.log,
        main.relay,
        main.pubsub,
        main.retention,
    ) else {
        return fail(vec![Problem::file(&main_display, "invalid settings")]);
    };
    if main.orgs.len() != main.org_count {
        return fail(vec![Problem::file(&main_display, "invalid orgs")]);
    }
    Ok(Config {
        main_file: main_file.to_path_buf(),
        channels_dir: main.channels_dir,
        content_hash: hex(hasher.finalize()),
        server,
        database,
        state_dir: main.state_dir,
        token_key: main.token_key,
        log,
        relay,
        pubsub,
        retention,
        orgs: main.orgs,
        channels,
    })
}
