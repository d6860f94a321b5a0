//! When a source backs up: a frequency (`manual`, `hourly`, `daily`, `weekly`, `monthly`) at a local time,
//! or a 5-field cron expression, in an IANA time zone. Parsed once from [`ScheduleSpec`] (the wire and event
//! shape); a [`Schedule`] is always valid and always serializes back to its normalized spec.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The schedule as sent by clients and as recorded in events. Every field optional: [`Schedule::parse`]
/// decides what is required, what is defaulted and what does not belong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// `HH:MM`, 24-hour, local to `timezone` (for `hourly` only the minutes count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `monday` … `sunday` (weekly only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<String>,
    /// 1–31 (monthly only); in shorter months the last day of the month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<u8>,
    /// A 5-field cron expression (minute hour day-of-month month day-of-week), instead of `frequency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone, default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Why a spec is not a schedule: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleProblem {
    /// The spec's field name (`frequency`, `time`, `dayOfWeek`, `dayOfMonth`, `cron`, `timezone`).
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> ScheduleProblem {
    ScheduleProblem {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Manual,
    Hourly {
        minute: u32,
    },
    Daily {
        time: NaiveTime,
    },
    Weekly {
        day: Weekday,
        time: NaiveTime,
    },
    Monthly {
        day: u32,
        time: NaiveTime,
    },
    Cron {
        expression: String,
        cron: Box<croner::Cron>,
    },
}

/// A valid schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ScheduleSpec", into = "ScheduleSpec")]
pub struct Schedule {
    rule: Rule,
    timezone: Tz,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_spec() == other.to_spec()
    }
}

impl Eq for Schedule {}

impl Default for Schedule {
    /// Daily at 02:00 UTC.
    fn default() -> Self {
        Self {
            rule: Rule::Daily {
                time: NaiveTime::from_hms_opt(2, 0, 0).expect("02:00 is a time"),
            },
            timezone: Tz::UTC,
        }
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, d)| *d == day)
        .map(|(n, _)| *n)
        .unwrap_or("monday")
}

/// The day names `dayOfWeek` takes (matched without regard to case), `monday` first.
pub fn weekday_names() -> impl Iterator<Item = &'static str> {
    WEEKDAYS.iter().map(|(name, _)| *name)
}

/// Every time zone `timezone` takes: the IANA tz database as chrono-tz carries it.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

fn parse_time(raw: &str) -> Result<NaiveTime, ScheduleProblem> {
    let bad = || problem("time", "must be HH:MM (24-hour), e.g. \"02:30\"");
    let (h, m) = raw.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

impl TryFrom<ScheduleSpec> for Schedule {
    type Error = String;

    fn try_from(spec: ScheduleSpec) -> Result<Self, Self::Error> {
        Self::parse(&spec).map_err(|p| format!("{}: {}", p.field, p.message))
    }
}

impl From<Schedule> for ScheduleSpec {
    fn from(schedule: Schedule) -> Self {
        schedule.to_spec()
    }
}

impl Schedule {
    pub fn parse(spec: &ScheduleSpec) -> Result<Self, ScheduleProblem> {
        let timezone = match spec.timezone.as_deref() {
            None => Tz::UTC,
            Some(raw) => raw.parse::<Tz>().map_err(|_| {
                problem(
                    "timezone",
                    "is not an IANA time zone (e.g. \"Europe/Paris\")",
                )
            })?,
        };
        let not_here = |field: &'static str, what: &str| {
            problem(field, format!("does not apply to {what} schedules"))
        };
        let time = spec.time.as_deref().map(parse_time).transpose()?;
        let midnight = NaiveTime::MIN;
        let rule = match (spec.frequency.as_deref(), spec.cron.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "cron",
                    "give either `frequency` or `cron`, not both",
                ))
            }
            (None, None) => {
                return Err(problem("frequency", "is required (or give `cron`)"));
            }
            (None, Some(expression)) => {
                for (field, present) in [
                    ("time", spec.time.is_some()),
                    ("dayOfWeek", spec.day_of_week.is_some()),
                    ("dayOfMonth", spec.day_of_month.is_some()),
                ] {
                    if present {
                        return Err(not_here(field, "cron"));
                    }
                }
                let expression = expression.split_whitespace().collect::<Vec<_>>();
                if expression.len() != 5 {
                    return Err(problem(
                        "cron",
                        "must have 5 fields: minute hour day-of-month month day-of-week",
                    ));
                }
                let expression = expression.join(" ");
                let cron = croner::parser::CronParser::new()
                    .parse(&expression)
                    .map_err(|e| problem("cron", format!("is not a valid cron expression: {e}")))?;
                // An expression that never fires (e.g. 30 February) is refused rather than stored.
                let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
                if cron.find_next_occurrence(&probe, false).is_err() {
                    return Err(problem("cron", "never fires"));
                }
                Rule::Cron {
                    expression,
                    cron: Box::new(cron),
                }
            }
            (Some(frequency), None) => {
                let (dow, dom) = (spec.day_of_week.is_some(), spec.day_of_month.is_some());
                match frequency {
                    "manual" | "hourly" | "daily" if dow => {
                        return Err(not_here("dayOfWeek", frequency))
                    }
                    "manual" | "hourly" | "daily" | "weekly" if dom => {
                        return Err(not_here("dayOfMonth", frequency))
                    }
                    "monthly" if dow => return Err(not_here("dayOfWeek", frequency)),
                    "manual" if spec.time.is_some() => return Err(not_here("time", frequency)),
                    _ => {}
                }
                match frequency {
                    "manual" => Rule::Manual,
                    "hourly" => Rule::Hourly {
                        minute: time.map_or(0, |t| t.minute()),
                    },
                    "daily" => Rule::Daily {
                        time: time.unwrap_or(midnight),
                    },
                    "weekly" => {
                        let day = match spec.day_of_week.as_deref() {
                            None => Weekday::Mon,
                            Some(raw) => WEEKDAYS
                                .iter()
                                .find(|(n, _)| n.eq_ignore_ascii_case(raw))
                                .map(|(_, d)| *d)
                                .ok_or_else(|| {
                                    problem("dayOfWeek", "must be a day name, `monday` to `sunday`")
                                })?,
                        };
                        Rule::Weekly {
                            day,
                            time: time.unwrap_or(midnight),
                        }
                    }
                    "monthly" => {
                        let day = spec.day_of_month.unwrap_or(1);
                        if !(1..=31).contains(&day) {
                            return Err(problem("dayOfMonth", "must be between 1 and 31"));
                        }
                        Rule::Monthly {
                            day: u32::from(day),
                            time: time.unwrap_or(midnight),
                        }
                    }
                    _ => {
                        return Err(problem(
                            "frequency",
                            "must be one of manual, hourly, daily, weekly, monthly",
                        ))
                    }
                }
            }
        };
        Ok(Self { rule, timezone })
    }

    /// The normalized spec: defaults filled in, so equal schedules serialize identically.
    pub fn to_spec(&self) -> ScheduleSpec {
        let hhmm = |t: &NaiveTime| format!("{:02}:{:02}", t.hour(), t.minute());
        let mut spec = ScheduleSpec {
            timezone: Some(self.timezone.name().to_owned()),
            ..ScheduleSpec::default()
        };
        let frequency = |s: &mut ScheduleSpec, f: &str| s.frequency = Some(f.to_owned());
        match &self.rule {
            Rule::Manual => frequency(&mut spec, "manual"),
            Rule::Hourly { minute } => {
                frequency(&mut spec, "hourly");
                spec.time = Some(format!("00:{minute:02}"));
            }
            Rule::Daily { time } => {
                frequency(&mut spec, "daily");
                spec.time = Some(hhmm(time));
            }
            Rule::Weekly { day, time } => {
                frequency(&mut spec, "weekly");
                spec.time = Some(hhmm(time));
                spec.day_of_week = Some(weekday_name(*day).to_owned());
            }
            Rule::Monthly { day, time } => {
                frequency(&mut spec, "monthly");
                spec.time = Some(hhmm(time));
                spec.day_of_month = Some(*day as u8);
            }
            Rule::Cron { expression, .. } => spec.cron = Some(expression.clone()),
        }
        spec
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.rule, Rule::Manual)
    }

    /// The first time strictly after `now` at which the schedule fires; `None` for manual schedules.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        let local_now = now.with_timezone(&tz);
        // A local time that falls into a DST gap moves forward by the gap; an ambiguous one takes the first.
        let at = |date: NaiveDate, time: NaiveTime| -> Option<DateTime<Utc>> {
            let naive = date.and_time(time);
            tz.from_local_datetime(&naive)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(naive + Duration::hours(1)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
        };
        let today = local_now.date_naive();
        match &self.rule {
            Rule::Manual => None,
            Rule::Hourly { minute } => {
                let hour_start = local_now
                    .with_minute(0)?
                    .with_second(0)?
                    .with_nanosecond(0)?
                    .with_timezone(&Utc);
                let candidate = hour_start + Duration::minutes(i64::from(*minute));
                Some(if candidate > now {
                    candidate
                } else {
                    candidate + Duration::hours(1)
                })
            }
            Rule::Daily { time } => (0..=2)
                .filter_map(|d| at(today + Duration::days(d), *time))
                .find(|t| *t > now),
            Rule::Weekly { day, time } => (0..=8)
                .map(|d| today + Duration::days(d))
                .filter(|date| date.weekday() == *day)
                .filter_map(|date| at(date, *time))
                .find(|t| *t > now),
            Rule::Monthly { day, time } => {
                let (mut year, mut month) = (today.year(), today.month());
                for _ in 0..=13 {
                    let last = last_day_of_month(year, month);
                    if let Some(date) = NaiveDate::from_ymd_opt(year, month, (*day).min(last)) {
                        if let Some(t) = at(date, *time).filter(|t| *t > now) {
                            return Some(t);
                        }
                    }
                    (year, month) = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                }
                None
            }
            Rule::Cron { cron, .. } => cron
                .find_next_occurrence(&local_now, false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

impl Schedule {
    /// Whether the schedule fires exactly at `at` (slots are whole minutes, so a second before is no slot).
    pub fn fires_at(&self, at: DateTime<Utc>) -> bool {
        self.next_after(at - Duration::seconds(1)) == Some(at)
    }

    /// The slot a scheduler runs now: the latest slot at or before `now`, provided it is not before
    /// `first_unhandled` (the earliest slot nobody has handled yet). After downtime this is one catch-up
    /// slot, the most recent missed one, never a burst of every slot missed.
    pub fn due_slot(
        &self,
        first_unhandled: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if first_unhandled > now || self.is_manual() {
            return None;
        }
        let floor = first_unhandled - Duration::seconds(1);
        // Look back through growing windows and walk forward only inside the first one that holds a slot:
        // each earlier, smaller window held none, so the walk is short however dense the schedule and however
        // long the downtime.
        let windows = [
            Duration::minutes(2),
            Duration::hours(2),
            Duration::days(2),
            Duration::days(9),
            Duration::days(63),
            Duration::days(800),
        ];
        let starts = windows
            .iter()
            .map(|w| now - *w)
            .filter(|start| *start > floor)
            .chain(std::iter::once(floor));
        for start in starts {
            let Some(mut slot) = self.next_after(start).filter(|s| *s <= now) else {
                continue;
            };
            while let Some(next) = self.next_after(slot).filter(|n| *n <= now) {
                slot = next;
            }
            return Some(slot);
        }
        None
    }
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ScheduleSpec {
        serde_json::from_value(json).unwrap()
    }

    fn parse(json: serde_json::Value) -> Result<Schedule, ScheduleProblem> {
        Schedule::parse(&spec(json))
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn frequencies_fill_in_defaults_and_round_trip() {
        let s =
            parse(serde_json::json!({"frequency": "weekly", "timezone": "Europe/Paris"})).unwrap();
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"frequency": "weekly", "time": "00:00", "dayOfWeek": "monday", "timezone": "Europe/Paris"})
        );
        let again: Schedule = serde_json::from_value(back).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn bad_specs_name_their_field() {
        let field = |json| parse(json).unwrap_err().field;
        assert_eq!(field(serde_json::json!({})), "frequency");
        assert_eq!(
            field(serde_json::json!({"frequency": "yearly"})),
            "frequency"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "daily", "time": "25:00"})),
            "time"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "daily", "time": "2:00"})),
            "time"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "daily", "timezone": "Mars/Olympus"})),
            "timezone"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "weekly", "dayOfWeek": "funday"})),
            "dayOfWeek"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "monthly", "dayOfMonth": 32})),
            "dayOfMonth"
        );
        assert_eq!(
            field(serde_json::json!({"frequency": "daily", "dayOfMonth": 3})),
            "dayOfMonth"
        );
        assert_eq!(field(serde_json::json!({"cron": "61 * * * *"})), "cron");
        assert_eq!(field(serde_json::json!({"cron": "0 0 * * * *"})), "cron");
        assert_eq!(field(serde_json::json!({"cron": "0 0 30 2 *"})), "cron");
        assert_eq!(
            field(serde_json::json!({"cron": "0 0 * * *", "frequency": "daily"})),
            "cron"
        );
    }

    #[test]
    fn next_sync_follows_the_local_clock() {
        let now = utc(2026, 3, 10, 12, 0);
        let daily = parse(serde_json::json!({"frequency": "daily", "time": "09:30", "timezone": "America/New_York"})).unwrap();
        // 09:30 in New York (EDT from 8 March 2026, UTC-4) is 13:30 UTC: still ahead today.
        assert_eq!(daily.next_after(now), Some(utc(2026, 3, 10, 13, 30)));
        let hourly = parse(serde_json::json!({"frequency": "hourly", "time": "00:15"})).unwrap();
        assert_eq!(hourly.next_after(now), Some(utc(2026, 3, 10, 12, 15)));
        let weekly = parse(
            serde_json::json!({"frequency": "weekly", "dayOfWeek": "tuesday", "time": "08:00"}),
        )
        .unwrap();
        // 10 March 2026 is a Tuesday; 08:00 has passed, so next week.
        assert_eq!(weekly.next_after(now), Some(utc(2026, 3, 17, 8, 0)));
        let monthly = parse(serde_json::json!({"frequency": "monthly", "dayOfMonth": 31})).unwrap();
        assert_eq!(monthly.next_after(now), Some(utc(2026, 3, 31, 0, 0)));
        assert_eq!(
            monthly.next_after(utc(2026, 4, 1, 0, 0)),
            Some(utc(2026, 4, 30, 0, 0))
        );
        let cron =
            parse(serde_json::json!({"cron": "0 3 * * 1", "timezone": "Asia/Tokyo"})).unwrap();
        // Mondays 03:00 Tokyo = Sunday 18:00 UTC.
        assert_eq!(cron.next_after(now), Some(utc(2026, 3, 15, 18, 0)));
        let manual = parse(serde_json::json!({"frequency": "manual"})).unwrap();
        assert_eq!(manual.next_after(now), None);
    }

    #[test]
    fn a_slot_is_a_time_the_schedule_fires_at() {
        let daily = parse(serde_json::json!({"frequency": "daily", "time": "02:00"})).unwrap();
        assert!(daily.fires_at(utc(2026, 3, 10, 2, 0)));
        assert!(!daily.fires_at(utc(2026, 3, 10, 3, 0)));
        assert!(!daily.fires_at(utc(2026, 3, 10, 2, 0) + Duration::seconds(30)));
        let cron = parse(serde_json::json!({"cron": "*/15 * * * *"})).unwrap();
        assert!(cron.fires_at(utc(2026, 3, 10, 12, 45)));
        assert!(!cron.fires_at(utc(2026, 3, 10, 12, 46)));
    }

    #[test]
    fn the_due_slot_is_the_latest_one_not_yet_handled() {
        let every_minute = parse(serde_json::json!({"cron": "* * * * *"})).unwrap();
        let now = utc(2026, 3, 10, 12, 0) + Duration::seconds(20);
        // Due on time.
        assert_eq!(
            every_minute.due_slot(utc(2026, 3, 10, 12, 0), now),
            Some(utc(2026, 3, 10, 12, 0))
        );
        // Not yet.
        assert_eq!(every_minute.due_slot(utc(2026, 3, 10, 12, 1), now), None);
        // After a day with no scheduler: one catch-up slot, the most recent.
        assert_eq!(
            every_minute.due_slot(utc(2026, 3, 9, 11, 0), now),
            Some(utc(2026, 3, 10, 12, 0))
        );
        let daily = parse(
            serde_json::json!({"frequency": "daily", "time": "02:00", "timezone": "Europe/Paris"}),
        )
        .unwrap();
        // 02:00 in Paris (CET, UTC+1) is 01:00 UTC; missed for a week, the latest is this morning's.
        assert_eq!(
            daily.due_slot(utc(2026, 3, 3, 1, 0), now),
            Some(utc(2026, 3, 10, 1, 0))
        );
        // The latest slot before `now` was handled already (the first unhandled one is tomorrow's).
        assert_eq!(daily.due_slot(utc(2026, 3, 11, 1, 0), now), None);
        // A sparse schedule far behind: 29 February, last fired in 2024.
        let leap = parse(serde_json::json!({"cron": "0 0 29 2 *"})).unwrap();
        assert_eq!(
            leap.due_slot(utc(2020, 2, 29, 0, 0), now),
            Some(utc(2024, 2, 29, 0, 0))
        );
        assert_eq!(
            parse(serde_json::json!({"frequency": "manual"}))
                .unwrap()
                .due_slot(utc(2026, 3, 1, 0, 0), now),
            None
        );
    }
}
