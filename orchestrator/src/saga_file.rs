//! Saga definitions as files: the TOML a user writes (`--saga-file`, `SAGA_FILES`), read into
//! a [`SagaFile`] whose every part has been checked, and from it the core's [`SagaDefinition`].
//!
//! The order saga is one such file, `sagas/order.toml`, compiled in as the default.
//!
//! ```toml
//! name = "trip"
//! version = 1
//! input_schema = "trip.schema.json"        # optional; or an inline table
//!
//! [defaults.action]                        # optional; what a step does not say
//! timeout = "5s"
//! attempts = 4
//! backoff = { initial = "250ms", max = "10s" }
//!
//! [[steps]]
//! name = "flight"
//! participant = "flights"                  # its commands go to {ns}.flights.commands
//! action = { command = "bookFlight", carries = ["input.from", "input.to"] }
//! compensation = { command = "cancelFlight", carries = ["steps.flight.bookingRef"] }
//! ```
//!
//! A file that breaks a rule is refused with a [`SagaFileError`] naming the file, the step
//! and the rule, so that a bad definition stops the orchestrator at start-up, never a saga in
//! flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sagaflow_saga::{Compensation, DefinitionError, Millis, RetryPolicy, SagaDefinition, StepDefinition};

/// The order saga's definition, as shipped in the repository and used unless a file named
/// `order` is given.
pub const ORDER_SAGA: &str = include_str!("../../sagas/order.toml");

/// Where [`ORDER_SAGA`] comes from, for messages.
pub const ORDER_SAGA_PATH: &str = "sagas/order.toml";

/// The most bytes a definition file (or its input schema) may take: these are configuration,
/// not data, and a larger one is a mistake.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Names of sagas and participants become queue names and URL segments; command names and
/// carried fields become JSON keys. All are kept short and plain.
const MAX_NAME_LEN: usize = 64;

/// A definition file, read and checked. The store keeps each one a saga runs under, so that
/// a saga finishes with the steps, participants and carried fields it started with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SagaFile {
    /// Where it was read from (`sagas/order.toml` for the built-in one).
    pub path: PathBuf,
    pub name: String,
    pub version: u32,
    /// The JSON Schema the saga's input must satisfy, if the file gives one.
    pub input_schema: Option<serde_json::Value>,
    pub steps: Vec<StepSpec>,
}

/// One step of a definition file, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepSpec {
    pub name: String,
    /// Fixes the queue the step's commands go to: `{namespace}.{participant}.commands`.
    pub participant: String,
    pub action: CommandSpec,
    /// `None`: the step is the point of no return.
    pub compensation: Option<CommandSpec>,
}

/// A command of a step: its name, what it carries and how it is retried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandSpec {
    pub command: String,
    /// Paths into the saga's input (`input.userId`) or an earlier step's result
    /// (`steps.flight.bookingRef`), in the order written.
    pub carries: Vec<String>,
    pub retry: RetryPolicy,
}

/// Why a definition file was refused: the file, the step when the rule concerns one, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {rule}", .file.display(), .step.as_ref().map(|s| format!(", step `{s}`")).unwrap_or_default())]
pub struct SagaFileError {
    pub file: PathBuf,
    pub step: Option<String>,
    pub rule: Rule,
}

/// The rules a definition file must keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("is not a valid definition: {0}")]
    Syntax(String),
    #[error("{what} {value:?} must be 1 to {MAX_NAME_LEN} of a-z, 0-9 and -, starting with a letter")]
    BadName { what: &'static str, value: String },
    #[error("command {0:?} must be 1 to {MAX_NAME_LEN} ASCII letters, digits or _, starting with a letter")]
    BadCommand(String),
    #[error("the version must be 1 or more")]
    ZeroVersion,
    #[error("the input schema is not a valid JSON Schema: {0}")]
    BadSchema(String),
    #[error("{field} must be a duration such as \"5s\" or \"250ms\" (got {value:?})")]
    BadDuration { field: &'static str, value: String },
    #[error("{0} must be at least 1 ms")]
    ZeroDuration(&'static str),
    #[error("attempts must be 1 or more")]
    ZeroAttempts,
    #[error("the backoff's max is shorter than its initial wait")]
    BackoffMaxBelowInitial,
    #[error("carries {0:?}: a path is `input.<field>` or `steps.<earlier step>.<field>`, fields of a-z, A-Z, 0-9, _ and -")]
    BadPath(String),
    #[error("carries {path:?}: step `{step}` does not come before this one, so it has no result yet")]
    NotEarlier { path: String, step: String },
    #[error("carries {0:?} twice")]
    CarriedTwice(String),
    #[error("carries two fields named {0:?}: a command's payload names each by its last segment")]
    SameName(String),
    #[error("{0}")]
    Definition(DefinitionError),
    #[error("{0}")]
    OrderSaga(crate::order_saga::OrderRule),
    #[error("the saga {0:?} is defined twice (each file names one saga; a new version replaces the file)")]
    DefinedTwice(String),
}

impl SagaFile {
    /// The built-in order saga.
    pub fn order() -> Self {
        Self::parse(Path::new(ORDER_SAGA_PATH), ORDER_SAGA).expect("sagas/order.toml is valid (tested)")
    }

    /// Reads and checks the file at `path`. A relative `input_schema` path is read beside it.
    pub fn read(path: &Path) -> Result<Self, SagaFileError> {
        let refuse = |rule| SagaFileError { file: path.to_owned(), step: None, rule };
        let text = read_bounded(path).map_err(refuse)?;
        let mut file = Self::parse(path, &text)?;
        if let Some(serde_json::Value::String(schema_path)) = &file.input_schema {
            let beside = path.parent().unwrap_or(Path::new(".")).join(schema_path);
            let text = read_bounded(&beside).map_err(refuse)?;
            let schema = serde_json::from_str(&text)
                .map_err(|e| refuse(Rule::BadSchema(format!("{}: {e}", beside.display()))))?;
            file.input_schema = Some(schema);
        }
        if let Some(schema) = &file.input_schema {
            jsonschema::validator_for(schema).map_err(|e| refuse(Rule::BadSchema(e.to_string())))?;
        }
        Ok(file)
    }

    /// Checks `text` as the definition file at `path` (which only names it in errors). An
    /// `input_schema` given as a path is left as that string for [`SagaFile::read`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, SagaFileError> {
        let refuse = |step: Option<&str>, rule| SagaFileError {
            file: path.to_owned(),
            step: step.map(str::to_owned),
            rule,
        };
        let raw: raw::File = toml::from_str(text).map_err(|e| refuse(None, Rule::Syntax(one_line(&e))))?;
        check_name("the saga's name", &raw.name).map_err(|r| refuse(None, r))?;
        if raw.version == 0 {
            return Err(refuse(None, Rule::ZeroVersion));
        }
        let mut steps: Vec<StepSpec> = Vec::with_capacity(raw.steps.len());
        for step in &raw.steps {
            let at = |rule| refuse(Some(&step.name), rule);
            check_name("a step's name", &step.name).map_err(at)?;
            check_name("a participant's name", &step.participant).map_err(at)?;
            let mut earlier: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let action = command(&step.action, &raw.defaults.action, &earlier).map_err(at)?;
            // A compensation may carry its own action's result too (a booking reference to
            // cancel). It is absent when the action's answer never came, as after a timeout, so
            // a participant must also find what to undo by the saga id.
            earlier.push(&step.name);
            let compensation = step
                .compensation
                .as_ref()
                .map(|c| command(c, &raw.defaults.compensation, &earlier))
                .transpose()
                .map_err(at)?;
            steps.push(StepSpec {
                name: step.name.clone(),
                participant: step.participant.clone(),
                action,
                compensation,
            });
        }
        let file = Self {
            path: path.to_owned(),
            name: raw.name,
            version: raw.version,
            input_schema: raw.input_schema,
            steps,
        };
        file.definition().map_err(|e| file.refuse_definition(e))?;
        Ok(file)
    }

    /// The core's definition of this saga.
    pub fn definition(&self) -> Result<SagaDefinition, DefinitionError> {
        SagaDefinition::new(
            self.steps
                .iter()
                .map(|s| StepDefinition {
                    name: s.name.clone(),
                    action: s.action.command.clone(),
                    retry: s.action.retry.clone(),
                    compensation: s
                        .compensation
                        .as_ref()
                        .map(|c| Compensation { command: c.command.clone(), retry: c.retry.clone() }),
                })
                .collect(),
        )
    }

    /// What names the definition a saga runs under. For a defined saga it covers everything
    /// the engine reads from the file (its name, steps, participants, carried fields, retries
    /// and input schema), but not the version number or the path: the same saga under a new
    /// number is the same definition. The order saga's is its core definition's, as stored
    /// before files existed.
    pub fn fingerprint(&self, definition: &SagaDefinition) -> String {
        if self.name == "order" {
            return definition.fingerprint();
        }
        use sha2::Digest;
        let what = serde_json::to_vec(&(&self.name, &self.steps, &self.input_schema)).expect("serialises");
        let digest = sha2::Sha256::digest(&what);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// A refusal of this file for breaking one of the core's rules, at the step it names.
    pub fn refuse_definition(&self, e: DefinitionError) -> SagaFileError {
        let step = match &e {
            DefinitionError::DuplicateStep(s) | DefinitionError::ZeroAttempts(s) => Some(s.as_str()),
            DefinitionError::CompensableAfterPointOfNoReturn { step, .. } => Some(step.as_str()),
            DefinitionError::NoSteps | DefinitionError::TooManySteps(_) => None,
        };
        self.refuse(step, Rule::Definition(e.clone()))
    }

    /// A refusal of this file for `rule`, at `step` if given.
    pub fn refuse(&self, step: Option<&str>, rule: Rule) -> SagaFileError {
        SagaFileError { file: self.path.clone(), step: step.map(str::to_owned), rule }
    }
}

/// The most bytes of JSON one command's payload may take: it travels in one broker message,
/// with its envelope, below any frame limit.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Why a command's payload could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload of {command} would take {bytes} bytes, over {MAX_PAYLOAD_BYTES}")]
    TooLarge { command: String, bytes: usize },
}

impl CommandSpec {
    /// What this command carries: each carried path's value from the saga's `input` or an
    /// earlier step's result, under the path's last segment (`input.userId` -> `userId`), as
    /// the order saga's typed commands name them. A path with nothing at its end is left out
    /// (a compensation carrying its action's result, after the action timed out, finds none).
    pub fn payload(
        &self,
        input: &serde_json::Value,
        results: &BTreeMap<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PayloadError> {
        let mut payload = serde_json::Map::new();
        for path in &self.carries {
            let mut segments = path.split('.');
            let root = match segments.next() {
                Some("input") => Some(input),
                Some("steps") => segments.next().and_then(|step| results.get(step)),
                _ => None,
            };
            let value = segments.try_fold(root, |at, field| Some(at?.get(field)));
            if let Some(Some(value)) = value {
                payload.insert(last_segment(path).to_owned(), value.clone());
            }
        }
        let bytes = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(usize::MAX);
        if bytes > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge { command: self.command.clone(), bytes });
        }
        Ok(payload)
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Reads the files given with `--saga-file`, and adds the built-in order saga unless one of
/// them defines `order`. Each saga may be defined once.
pub fn load(paths: &[PathBuf]) -> Result<BTreeMap<String, SagaFile>, SagaFileError> {
    let mut sagas = BTreeMap::new();
    for path in paths {
        let file = SagaFile::read(path)?;
        if sagas.contains_key(&file.name) {
            return Err(file.refuse(None, Rule::DefinedTwice(file.name.clone())));
        }
        sagas.insert(file.name.clone(), file);
    }
    if !sagas.contains_key("order") {
        sagas.insert("order".to_owned(), SagaFile::order());
    }
    Ok(sagas)
}

fn read_bounded(path: &Path) -> Result<String, Rule> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Rule::Unreadable(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| Rule::Unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Rule::TooLarge);
    }
    Ok(text)
}

/// TOML's errors span several lines with a caret; a start-up refusal is one line.
fn one_line(e: &toml::de::Error) -> String {
    let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
    format!("{}{at}", e.message().trim())
}

fn check_name(what: &'static str, value: &str) -> Result<(), Rule> {
    let ok = (1..=MAX_NAME_LEN).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(()).ok_or_else(|| Rule::BadName { what, value: value.chars().take(80).collect() })
}

fn check_command(value: &str) -> Result<(), Rule> {
    let ok = (1..=MAX_NAME_LEN).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some(()).ok_or_else(|| Rule::BadCommand(value.chars().take(80).collect()))
}

/// A carried path: `input.a.b` or `steps.<earlier>.a.b`.
fn check_path(path: &str, earlier: &[&str]) -> Result<(), Rule> {
    let bad = || Rule::BadPath(path.chars().take(200).collect());
    if path.len() > 4 * MAX_NAME_LEN {
        return Err(bad());
    }
    let segments: Vec<&str> = path.split('.').collect();
    let field = |s: &&str| {
        !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    };
    match segments.as_slice() {
        ["input", fields @ ..] if !fields.is_empty() && fields.iter().all(field) => Ok(()),
        ["steps", step, fields @ ..] if !fields.is_empty() && fields.iter().all(field) => {
            if earlier.contains(step) {
                Ok(())
            } else {
                Err(Rule::NotEarlier { path: path.to_owned(), step: (*step).to_owned() })
            }
        }
        _ => Err(bad()),
    }
}

fn command(raw: &raw::Command, defaults: &raw::Retry, earlier: &[&str]) -> Result<CommandSpec, Rule> {
    check_command(&raw.command)?;
    for (i, path) in raw.carries.iter().enumerate() {
        check_path(path, earlier)?;
        if raw.carries[..i].contains(path) {
            return Err(Rule::CarriedTwice(path.clone()));
        }
        if raw.carries[..i].iter().any(|p| last_segment(p) == last_segment(path)) {
            return Err(Rule::SameName(last_segment(path).to_owned()));
        }
    }
    let retry = raw.retry().or(defaults);
    let duration = |field: &'static str, value: &Option<String>, default: u64| -> Result<Millis, Rule> {
        let Some(text) = value else { return Ok(Millis(default)) };
        let d: Duration = humantime::parse_duration(text)
            .map_err(|_| Rule::BadDuration { field, value: text.chars().take(40).collect() })?;
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(Rule::ZeroDuration(field));
        }
        Ok(Millis(ms))
    };
    let backoff = retry.backoff.clone().unwrap_or_default();
    let policy = RetryPolicy {
        attempt_timeout: duration("timeout", &retry.timeout, raw::DEFAULT_TIMEOUT_MS)?,
        max_attempts: Some(match retry.attempts {
            Some(0) => return Err(Rule::ZeroAttempts),
            Some(n) => n,
            None => raw::DEFAULT_ATTEMPTS,
        }),
        backoff_initial: duration("backoff.initial", &backoff.initial, raw::DEFAULT_BACKOFF_INITIAL_MS)?,
        backoff_max: duration("backoff.max", &backoff.max, raw::DEFAULT_BACKOFF_MAX_MS)?,
    };
    if policy.backoff_max < policy.backoff_initial {
        return Err(Rule::BackoffMaxBelowInitial);
    }
    Ok(CommandSpec { command: raw.command.clone(), carries: raw.carries.clone(), retry: policy })
}

/// The file as written, before its rules are checked.
mod raw {
    use serde::Deserialize;

    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_ATTEMPTS: u32 = 4;
    pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 250;
    pub const DEFAULT_BACKOFF_MAX_MS: u64 = 10_000;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub name: String,
        pub version: u32,
        #[serde(default)]
        pub input_schema: Option<serde_json::Value>,
        #[serde(default)]
        pub defaults: Defaults,
        #[serde(default)]
        pub steps: Vec<Step>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Defaults {
        #[serde(default)]
        pub action: Retry,
        #[serde(default)]
        pub compensation: Retry,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Step {
        pub name: String,
        pub participant: String,
        pub action: Command,
        #[serde(default)]
        pub compensation: Option<Command>,
    }

    /// A command's own retry settings are its fields, not a flattened `Retry`: serde cannot
    /// refuse unknown fields through `flatten`, and a misspelt `atempts` must not pass silently.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Command {
        pub command: String,
        #[serde(default)]
        pub carries: Vec<String>,
        #[serde(default)]
        pub timeout: Option<String>,
        #[serde(default)]
        pub attempts: Option<u32>,
        #[serde(default)]
        pub backoff: Option<Backoff>,
    }

    impl Command {
        pub fn retry(&self) -> Retry {
            Retry { timeout: self.timeout.clone(), attempts: self.attempts, backoff: self.backoff.clone() }
        }
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Retry {
        #[serde(default)]
        pub timeout: Option<String>,
        #[serde(default)]
        pub attempts: Option<u32>,
        #[serde(default)]
        pub backoff: Option<Backoff>,
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Backoff {
        #[serde(default)]
        pub initial: Option<String>,
        #[serde(default)]
        pub max: Option<String>,
    }

    impl Retry {
        /// This command's settings, each falling back to the file's default.
        pub fn or(&self, defaults: &Retry) -> Retry {
            let backoff = match (&self.backoff, &defaults.backoff) {
                (Some(b), Some(d)) => Some(Backoff {
                    initial: b.initial.clone().or_else(|| d.initial.clone()),
                    max: b.max.clone().or_else(|| d.max.clone()),
                }),
                (b, d) => b.clone().or_else(|| d.clone()),
            };
            Retry {
                timeout: self.timeout.clone().or_else(|| defaults.timeout.clone()),
                attempts: self.attempts.or(defaults.attempts),
                backoff,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIP: &str = r#"
        name = "trip"
        version = 2
        input_schema = { type = "object", required = ["from"] }

        [defaults.action]
        timeout = "2s"
        attempts = 3

        [[steps]]
        name = "flight"
        participant = "flights"
        action = { command = "bookFlight", carries = ["input.from", "input.to"] }
        compensation = { command = "cancelFlight", carries = ["steps.flight.bookingRef"], attempts = 9 }

        [[steps]]
        name = "hotel"
        participant = "hotels"
        action = { command = "bookHotel", carries = ["input.city", "steps.flight.arrival"], timeout = "750ms" }
        compensation = { command = "cancelHotel" }

        [[steps]]
        name = "confirm"
        participant = "mailer"
        action = { command = "confirmTrip" }
    "#;

    fn parse(text: &str) -> Result<SagaFile, SagaFileError> {
        SagaFile::parse(Path::new("trip.toml"), text)
    }

    /// `TRIP` with `from` replaced by `to`, which must be in it.
    fn trip_with(from: &str, to: &str) -> Result<SagaFile, SagaFileError> {
        assert!(TRIP.contains(from), "{from}");
        parse(&TRIP.replacen(from, to, 1))
    }

    #[test]
    fn the_shipped_order_saga_is_the_order_saga_of_before() {
        // What the orchestrator built in code before the order saga was a file: the same steps,
        // commands and retries give the same fingerprint, so sagas stored by earlier versions
        // find their definition.
        let policy = |attempts| RetryPolicy {
            attempt_timeout: Millis(5_000),
            max_attempts: Some(attempts),
            backoff_initial: Millis(250),
            backoff_max: Millis(10_000),
        };
        let step = |name: &str, action: &str, undo: Option<&str>| StepDefinition {
            name: name.into(),
            action: action.into(),
            retry: policy(4),
            compensation: undo.map(|c| Compensation { command: c.into(), retry: policy(8) }),
        };
        let before = SagaDefinition::new(vec![
            step("payment", "chargePayment", Some("refundPayment")),
            step("inventory", "reserveStock", Some("releaseStock")),
            step("notification", "sendNotification", None),
        ])
        .unwrap();
        let file = SagaFile::order().definition().unwrap();
        assert_eq!(file, before);
        assert_eq!(file.fingerprint(), "fa0e6e96be00dae7", "the fingerprint the last release stored");
    }

    #[test]
    fn a_file_says_everything_a_step_needs() {
        let trip = parse(TRIP).unwrap();
        assert_eq!((trip.name.as_str(), trip.version), ("trip", 2));
        assert_eq!(trip.input_schema.as_ref().unwrap()["required"][0], "from");
        let flight = trip.step("flight").unwrap();
        assert_eq!(flight.participant, "flights");
        assert_eq!(flight.action.carries, ["input.from", "input.to"]);
        assert_eq!(flight.action.retry.attempt_timeout, Millis(2_000));
        assert_eq!(flight.action.retry.max_attempts, Some(3));
        let cancel = flight.compensation.as_ref().unwrap();
        assert_eq!(cancel.retry.max_attempts, Some(9));
        // Unset, and no default for compensations: the built-in defaults.
        assert_eq!(cancel.retry.attempt_timeout, Millis(raw::DEFAULT_TIMEOUT_MS));
        assert_eq!(trip.step("hotel").unwrap().action.retry.attempt_timeout, Millis(750));
        let definition = trip.definition().unwrap();
        assert_eq!(definition.point_of_no_return(), Some(2));
    }

    /// Every rule, broken once: the refusal names the file, the step and the rule.
    #[test]
    fn each_broken_rule_is_named_with_its_file_and_step() {
        let cases: Vec<(Result<SagaFile, SagaFileError>, Option<&str>, &str)> = vec![
            (trip_with("version = 2", "version = 0"), None, "version must be 1"),
            (trip_with("name = \"trip\"", "name = \"Trip\""), None, "the saga's name \"Trip\""),
            (
                trip_with("participant = \"hotels\"", "participant = \"hotels.x\""),
                Some("hotel"),
                "participant's name",
            ),
            (trip_with("name = \"hotel\"", "name = \"flight\""), Some("flight"), "appears twice"),
            (
                trip_with("command = \"bookHotel\"", "command = \"book hotel\""),
                Some("hotel"),
                "command \"book hotel\"",
            ),
            (
                trip_with("\"steps.flight.arrival\"", "\"steps.confirm.code\""),
                Some("hotel"),
                "step `confirm` does not come before",
            ),
            (
                trip_with("\"steps.flight.arrival\"", "\"steps.hotel.code\""),
                Some("hotel"),
                "step `hotel` does not come before",
            ),
            (trip_with("\"input.city\"", "\"env.city\""), Some("hotel"), "a path is"),
            (trip_with("\"input.city\"", "\"input.\""), Some("hotel"), "a path is"),
            (trip_with("\"input.to\"", "\"input.from\""), Some("flight"), "twice"),
            (
                trip_with("timeout = \"750ms\"", "timeout = \"soon\""),
                Some("hotel"),
                "timeout must be a duration",
            ),
            (trip_with("timeout = \"750ms\"", "timeout = \"0s\""), Some("hotel"), "at least 1 ms"),
            (trip_with("attempts = 9", "attempts = 0"), Some("flight"), "attempts must be 1 or more"),
            (
                trip_with("timeout = \"750ms\"", "backoff = { initial = \"2s\", max = \"1s\" }"),
                Some("hotel"),
                "max is shorter",
            ),
            (
                trip_with("command = \"cancelHotel\"", "command = \"cancelHotel\", retries = 3"),
                None,
                "unknown field `retries`",
            ),
            (trip_with("[defaults.action]", "[defaults.actions]"), None, "unknown field `actions`"),
            (parse("name = \"x\"\nversion = 1\n"), None, "at least one step"),
            (parse("version = 1"), None, "missing field `name`"),
            (parse("name = \"x\"\nversion = -1"), None, "not a valid definition"),
        ];
        for (result, step, rule) in cases {
            let e = result.expect_err(rule);
            assert_eq!(e.file, Path::new("trip.toml"), "{e}");
            assert_eq!(e.step.as_deref(), step, "{e}");
            let text = e.to_string();
            assert!(text.contains(rule), "{text:?} should say {rule:?}");
            assert!(text.starts_with("trip.toml"), "{text}");
            assert!(!text.contains('\n'), "one line: {text:?}");
        }
    }

    #[test]
    fn a_compensable_step_after_the_point_of_no_return_is_refused() {
        let text = TRIP.to_owned()
            + r#"
        [[steps]]
        name = "car"
        participant = "cars"
        action = { command = "rentCar" }
        compensation = { command = "returnCar" }
        "#;
        let e = parse(&text).unwrap_err();
        assert_eq!(e.step.as_deref(), Some("car"));
        assert!(e.to_string().contains("comes after `confirm`, which has none"), "{e}");
    }

    #[test]
    fn files_are_read_with_their_schema_beside_them_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("trip.toml");
        std::fs::write(
            &toml,
            TRIP.replace(
                "input_schema = { type = \"object\", required = [\"from\"] }",
                "input_schema = \"trip.schema.json\"",
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("trip.schema.json"), r#"{"type": "object", "required": ["to"]}"#)
            .unwrap();
        let trip = SagaFile::read(&toml).unwrap();
        assert_eq!(trip.input_schema.unwrap()["required"][0], "to");

        std::fs::write(dir.path().join("trip.schema.json"), r#"{"type": 12}"#).unwrap();
        let e = SagaFile::read(&toml).unwrap_err();
        assert!(matches!(e.rule, Rule::BadSchema(_)), "{e}");

        std::fs::write(&toml, "#".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
        assert_eq!(SagaFile::read(&toml).unwrap_err().rule, Rule::TooLarge);
        let missing = dir.path().join("nowhere.toml");
        assert!(matches!(SagaFile::read(&missing).unwrap_err().rule, Rule::Unreadable(_)));
    }

    #[test]
    fn the_order_saga_is_built_in_unless_a_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let trip = dir.path().join("trip.toml");
        std::fs::write(&trip, TRIP).unwrap();
        let sagas = load(std::slice::from_ref(&trip)).unwrap();
        assert_eq!(sagas.keys().collect::<Vec<_>>(), ["order", "trip"]);
        assert_eq!(sagas["order"].path, Path::new(ORDER_SAGA_PATH));

        let order = dir.path().join("order.toml");
        std::fs::write(&order, ORDER_SAGA.replace("attempts = 4", "attempts = 2")).unwrap();
        let sagas = load(std::slice::from_ref(&order)).unwrap();
        assert_eq!(sagas["order"].path, order);

        let e = load(&[trip.clone(), trip]).unwrap_err();
        assert_eq!(e.rule, Rule::DefinedTwice("trip".into()));
    }

    #[test]
    fn a_payload_takes_what_is_carried_and_nothing_else() {
        let trip = parse(TRIP).unwrap();
        let hotel = &trip.step("hotel").unwrap().action;
        let input = serde_json::json!({"city": "Oslo", "secret": "x", "from": "AMS"});
        let mut results = BTreeMap::new();
        results.insert("flight".to_owned(), serde_json::json!({"arrival": "10:40", "bookingRef": "F1"}));
        let payload = hotel.payload(&input, &results).unwrap();
        assert_eq!(
            serde_json::Value::Object(payload),
            serde_json::json!({"city": "Oslo", "arrival": "10:40"})
        );
        // The flight's answer never came: its compensation carries no reference, and says so
        // by leaving it out.
        let cancel = trip.step("flight").unwrap().compensation.as_ref().unwrap();
        assert!(cancel.payload(&input, &BTreeMap::new()).unwrap().is_empty());
        let big = serde_json::json!({"city": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert!(matches!(hotel.payload(&big, &results), Err(PayloadError::TooLarge { .. })));
    }

    #[test]
    fn two_carried_fields_may_not_share_a_name() {
        let e = trip_with("\"input.city\"", "\"input.arrival\"").unwrap_err();
        assert_eq!(e.rule, Rule::SameName("arrival".into()));
        assert_eq!(e.step.as_deref(), Some("hotel"));
    }

    proptest::proptest! {
        /// Whatever the input and results hold, the payload holds only carried names, each
        /// with the value found at its path, and making it never panics.
        #[test]
        fn payloads_hold_only_what_is_carried(
            input in json_value(3),
            flight in json_value(3),
        ) {
            let trip = parse(TRIP).unwrap();
            let hotel = &trip.step("hotel").unwrap().action;
            let mut results = BTreeMap::new();
            results.insert("flight".to_owned(), flight.clone());
            if let Ok(payload) = hotel.payload(&input, &results) {
                for (name, value) in &payload {
                    let expected = match name.as_str() {
                        "city" => input.get("city"),
                        "arrival" => flight.get("arrival"),
                        other => panic!("carried {other}, which is not carried"),
                    };
                    proptest::prop_assert_eq!(Some(value), expected);
                }
                proptest::prop_assert_eq!(payload.contains_key("city"), input.get("city").is_some());
            }
        }
    }

    fn json_value(depth: u32) -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(depth, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![Just("city".to_owned()), Just("arrival".to_owned()), "[a-z]{1,5}"],
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
