//! The paper's selection rule (Section 6.8, HELP's NAS code): walk the
//! candidate list in order, keep the first `keep` candidates whose predicted
//! latency is within the budget, answer the most accurate of them.

use super::candidate::Candidate;

/// Candidates kept by the paper's rule.
pub const PAPER_KEEP: usize = 3;

/// The first `keep` candidates of `list` (in list order) whose predicted ms
/// (`predicted[i]` belongs to `list[i]`) is <= `max_ms`, ranked by
/// objective, best first (ties: earlier in the list). Empty when none fits.
pub fn first_feasible(
    list: &[usize],
    predicted: &[f64],
    objective: &[f64],
    max_ms: f64,
    keep: usize,
) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = list
        .iter()
        .zip(predicted)
        .filter(|&(_, &ms)| ms <= max_ms)
        .take(keep)
        .map(|(&row, &ms)| Candidate {
            row,
            predicted_ms: ms,
            upper_ms: ms,
            objective: objective[row],
        })
        .collect();
    // Stable: equal objectives keep list order.
    kept.sort_by(|a, b| b.objective.total_cmp(&a.objective));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_three_feasible_and_answers_the_most_accurate() {
        // Rows 0..8; list order 5, 2, 7, 0, 3, 6, 1.
        let list = [5, 2, 7, 0, 3, 6, 1];
        let predicted = [9.0, 4.0, 12.0, 5.0, 3.0, 6.0, 2.0];
        let objective = [70.0, 99.0, 60.0, 90.0, 10.0, 50.0, 95.0, 40.0];
        // Budget 6: feasible in list order are rows 2 (4 ms), 0 (5), 3 (3), 6 (6), 1 (2).
        // The first three are 2, 0, 3; the best of them is row 3 (90).
        // Row 6 (95) and row 1 (99) fit but come later: the rule must not see them.
        let kept = first_feasible(&list, &predicted, &objective, 6.0, PAPER_KEEP);
        let rows: Vec<usize> = kept.iter().map(|c| c.row).collect();
        assert_eq!(rows, vec![3, 0, 2]);
        assert_eq!(kept[0].predicted_ms, 3.0);
        // A budget nothing meets.
        assert!(first_feasible(&list, &predicted, &objective, 1.0, 3).is_empty());
        // Exactly on the budget counts as feasible (row 1 predicts 2 ms).
        assert_eq!(
            first_feasible(&list, &predicted, &objective, 2.0, 3)[0].row,
            1
        );
    }
}
