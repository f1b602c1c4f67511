//! Pure rendering of the two list screens: a campaign's most recent calls (status, attempt,
//! next retry, why a queued call is held) and the most recent dead letters, each with the
//! selected row marked. Like `view`, it reads only the model.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::model::{Model, when_to_the_second};
use super::poller::ListSnapshot;
use super::view::fit;
use crate::protocol::api;

const COLUMN_SPACING: u16 = 2;
/// Columns of a campaign's name in the calls screen's title; longer names end with `…`.
const NAME_IN_TITLE_MAX_CHARS: usize = 40;
/// Characters of a call id shown: its end (version 7 ids begin with their creation time, so the
/// calls of one batch share their beginning).
const CALL_ID_CHARS: usize = 12;

/// `…1a2b3c4d5e6f`: the end of a call id.
fn short_id(call_id: &str) -> String {
    let chars: Vec<char> = call_id.chars().collect();
    if chars.len() <= CALL_ID_CHARS { call_id.to_string() } else { format!("…{}", chars[chars.len() - CALL_ID_CHARS..].iter().collect::<String>()) }
}

/// An RFC 3339 instant as `08:00:05` / `Sat 08:00:05` / `2026-11-28 08:00:05` in the model's
/// zone, dated relative to the snapshot's time.
fn local(model: &Model, text: Option<&str>) -> String {
    let (Some(text), Some(snapshot)) = (text, model.snapshot.as_ref()) else { return String::new() };
    match text.parse::<jiff::Timestamp>() {
        Ok(at) => when_to_the_second(at, snapshot.fetched_at, &model.zone),
        Err(_) => text.to_string(),
    }
}

fn status_style(status: &str) -> Style {
    match status {
        "PICKED" => Style::new().fg(Color::Green),
        "FAILED" => Style::new().fg(Color::Red),
        "PROCESSING" => Style::new().fg(Color::Cyan),
        "RETRYING" => Style::new().fg(Color::Yellow),
        "CANCELLED" => Style::new().add_modifier(Modifier::DIM),
        _ => Style::new(),
    }
}

fn loading(frame: &mut Frame, area: Rect, title: String) {
    let text = Paragraph::new("reading the list from the service…").block(Block::bordered().title(title)).style(Style::new().add_modifier(Modifier::DIM));
    frame.render_widget(text, area);
}

/// A table whose last column takes the room the others leave, its cells cut with `…`.
fn table(frame: &mut Frame, area: Rect, title: String, headers: &[&str], rows: Vec<(Vec<String>, Style)>, selected: usize) {
    let block = Block::bordered().title(title);
    let room = block.inner(area).width.saturating_sub(2);
    let last = headers.len() - 1;
    let widest =
        |c: usize| rows.iter().map(|(cells, _)| ratatui::text::Span::raw(cells[c].as_str()).width()).chain([headers[c].len()]).max().unwrap_or(0) as u16;
    let fixed: u16 = (0..last).map(widest).sum::<u16>() + COLUMN_SPACING * last as u16;
    let last_width = room.saturating_sub(fixed).max(8);
    let widths: Vec<Constraint> = (0..=last).map(|c| Constraint::Length(if c == last { last_width } else { widest(c) })).collect();
    let header = Row::new(headers.iter().map(|h| Cell::from(*h))).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body = rows.into_iter().map(|(mut cells, style)| {
        cells[last] = fit(&cells[last], last_width as usize);
        Row::new(cells.into_iter().enumerate().map(|(c, text)| if c == 2 { Cell::from(text).style(style) } else { Cell::from(text) }))
    });
    let widget = Table::new(body, widths)
        .header(header)
        .block(block)
        .column_spacing(COLUMN_SPACING)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(widget, area, &mut state);
}

fn held_text(model: &Model, call: &api::Call) -> String {
    match &call.held_reason {
        Some(reason) => {
            let reason = match reason.as_str() {
                "outside_calling_hours" => "calling hours".to_string(),
                other => other.replace('_', " "),
            };
            match call.next_dial_at.as_deref() {
                Some(at) => format!("{reason} until {}", local(model, Some(at))),
                None => reason,
            }
        }
        None => call.error_message.clone().unwrap_or_default(),
    }
}

pub fn render_calls(frame: &mut Frame, area: Rect, model: &Model, campaign_id: u64, name: &str) {
    let base = format!(" Calls of campaign {campaign_id} ({})", fit(name, NAME_IN_TITLE_MAX_CHARS));
    let Some(ListSnapshot::Calls { calls, complete, .. }) = model.list() else {
        return loading(frame, area, format!("{base} "));
    };
    let title = if *complete {
        format!("{base}: the {} most recent, newest first; times local ", calls.len())
    } else {
        format!("{base}: reading on to the most recent… ")
    };
    if calls.is_empty() {
        frame.render_widget(Paragraph::new("no calls yet").block(Block::bordered().title(title)).style(Style::new().add_modifier(Modifier::DIM)), area);
        return;
    }
    let headers = ["Call", "Phone", "Status", "Attempt", "Last outcome", "Next retry", "Updated", "Held / error"];
    let rows = calls
        .iter()
        .map(|call| {
            let cells = vec![
                short_id(&call.call_id),
                call.phone_number.clone(),
                call.status.clone(),
                format!("{}/{}", call.attempt_count, call.max_attempts),
                call.last_outcome.clone().unwrap_or_default(),
                local(model, call.next_retry_at.as_deref()),
                local(model, Some(&call.updated_at)),
                held_text(model, call),
            ];
            (cells, status_style(&call.status))
        })
        .collect();
    table(frame, area, title, &headers, rows, model.list_selected);
}

pub fn render_dead_letters(frame: &mut Frame, area: Rect, model: &Model) {
    let Some(ListSnapshot::DeadLetters { letters, complete }) = model.list() else {
        return loading(frame, area, " Dead letters ".into());
    };
    let title = if *complete {
        format!(" Dead letters: the {} most recent, newest first; times local ", letters.len())
    } else {
        " Dead letters: reading on to the most recent… ".to_string()
    };
    if letters.is_empty() {
        let text = Paragraph::new("no dead letters: every call the provider could not take was retried or answered")
            .block(Block::bordered().title(title))
            .alignment(Alignment::Left)
            .style(Style::new().add_modifier(Modifier::DIM));
        frame.render_widget(text, area);
        return;
    }
    let headers = ["ID", "Campaign", "Replayed", "Phone", "Attempt", "Created", "Call", "Error"];
    let rows = letters
        .iter()
        .map(|letter| {
            let replayed = letter.replayed_at.as_deref().map(|at| local(model, Some(at))).unwrap_or_else(|| "no".into());
            let style = if letter.replayed_at.is_some() { Style::new().fg(Color::Green) } else { Style::new().fg(Color::Red) };
            let cells = vec![
                letter.id.to_string(),
                letter.campaign_id.to_string(),
                replayed,
                letter.phone_number.clone(),
                letter.attempt.to_string(),
                local(model, Some(&letter.created_at)),
                short_id(&letter.call_id),
                letter.error.clone(),
            ];
            (cells, style)
        })
        .collect();
    table(frame, area, title, &headers, rows, model.list_selected);
}

#[cfg(test)]
mod tests {
    use super::super::model::Screen;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn call_ids_show_their_end() {
        assert_eq!(short_id("01a20069-0599-7667-9938-09d6734e331b"), "…09d6734e331b");
        assert_eq!(short_id("short"), "short");
    }

    fn calls_screen() -> (Model, Vec<String>) {
        let mut model = model_with(with_calls(recorded_snapshot(METRICS)));
        model.selected_id = Some(1);
        model.open_calls();
        let screen = draw(&model, 120, 40);
        (model, screen)
    }

    #[test]
    fn the_calls_screen_lists_the_most_recent_calls_with_status_attempt_and_next_retry() {
        let (model, screen) = calls_screen();
        check_snapshot("screen_calls", &screen);
        let (title_row, _) = expect_at(&screen, " Calls of campaign 1 (Spring renewals): the 100 most recent, newest first; times local ");
        let (header_row, _) = expect_at(&screen, "Next retry");
        assert_eq!(header_row, title_row + 1);
        for column in ["Call", "Phone", "Status", "Attempt", "Last outcome", "Updated", "Held / error"] {
            assert!(screen[header_row].contains(column), "{column}: {}", screen[header_row]);
        }
        let Some(ListSnapshot::Calls { calls, .. }) = model.list() else { panic!("the calls are listed") };
        let newest = &calls[0];
        let first_row = &screen[header_row + 1];
        assert!(first_row.contains("▶") && first_row.contains(&newest.phone_number) && first_row.contains(&newest.status), "{first_row}");
        let retrying = calls.iter().position(|c| c.status == "RETRYING").expect("the recording has a retrying call");
        let line = &screen[header_row + 1 + retrying];
        let call = &calls[retrying];
        assert!(line.contains(&format!("{}/{}", call.attempt_count, call.max_attempts)), "{line}");
        let next = call.next_retry_at.as_deref().unwrap().parse::<jiff::Timestamp>().unwrap();
        assert!(line.contains(&next.strftime("%H:%M:%S").to_string()), "the next retry's time: {line}");
    }

    #[test]
    fn the_calls_screen_says_why_a_queued_call_is_held() {
        let mut snapshot = with_calls(recorded_snapshot(METRICS));
        let Some(ListSnapshot::Calls { calls, .. }) = &mut snapshot.list else { unreachable!() };
        calls[0].status = "INITIATED".into();
        calls[0].held_reason = Some("outside_calling_hours".into());
        calls[0].next_dial_at = Some((snapshot.fetched_at + jiff::SignedDuration::from_hours(2)).to_string());
        let at = (snapshot.fetched_at + jiff::SignedDuration::from_hours(2)).strftime("%H:%M:%S").to_string();
        let mut model = model_with(snapshot);
        model.selected_id = Some(1);
        model.open_calls();
        let screen = draw(&model, 120, 40);
        expect_at(&screen, &format!("calling hours until {at}"));
    }

    #[test]
    fn the_dead_letters_screen_lists_them_newest_first_with_replays() {
        let mut model = model_with(with_dead_letters(recorded_snapshot(METRICS)));
        model.open(Screen::DeadLetters);
        let screen = draw(&model, 120, 40);
        check_snapshot("screen_dead_letters", &screen);
        let (header_row, _) = expect_at(&screen, "Replayed");
        let ids: Vec<&str> = (1..=4).map(|i| screen[header_row + i].split_whitespace().find(|w| w.chars().all(|c| c.is_ascii_digit())).unwrap()).collect();
        assert_eq!(ids, ["4", "3", "2", "1"], "newest first");
        let Some(ListSnapshot::DeadLetters { letters, .. }) = model.list() else { panic!("the dead letters are listed") };
        let replayed: jiff::Timestamp = letters[3].replayed_at.as_deref().expect("dead letter 1 was replayed").parse().unwrap();
        assert!(screen[header_row + 4].contains(&replayed.strftime("%H:%M:%S").to_string()), "dead letter 1 was replayed: {}", screen[header_row + 4]);
        assert!(screen[header_row + 1].contains(" no "), "{}", screen[header_row + 1]);
        assert!(screen[header_row + 1].contains("Connection refused"), "{}", screen[header_row + 1]);
        assert_eq!(model.replay_selected(), Some(super::super::poller::Request::Replay { id: 4 }));
    }
}
