//! Calibration by simulation: how often each verdict comes out for known differences (the
//! numbers are in docs/bench.md, "Comparing runs").

use super::*;

/// `n` samples around `mean` with coefficient of variation `cv`.
fn draw(rng: &mut Rng, n: usize, mean: f64, cv: f64) -> Vec<f64> {
    (0..n).map(|_| mean * (1.0 + cv * rng.normal())).collect()
}

/// Verdict counts over `trials` comparisons of 20 base and 20 new samples.
fn tally(trials: usize, shift: f64, cv: f64) -> [usize; 4] {
    let mut rng = Rng::new(7);
    let s = Settings::default();
    let mut counts = [0; 4];
    for t in 0..trials {
        let base = draw(&mut rng, 20, 1000.0, cv);
        let new = draw(&mut rng, 20, 1000.0 * (1.0 - shift), cv);
        let r = ratio_of_medians(&base, &new, &s, t as u64).expect("samples");
        counts[verdict(&r, s.threshold) as usize] += 1;
    }
    counts
}

const WORSE: usize = Verdict::Worse as usize;
const INCONCLUSIVE: usize = Verdict::Inconclusive as usize;
const SAME: usize = Verdict::Same as usize;

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the counts docs/bench.md quotes, shown with --nocapture"
)]
fn identical_distributions_are_the_same() {
    let c = tally(1000, 0.0, 0.01);
    eprintln!("identical, CV 1%: {c:?} [worse, inconclusive, same, better]");
    assert!(c[SAME] >= 950, "{c:?}");
    assert_eq!(c[WORSE], 0, "{c:?}");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the counts docs/bench.md quotes, shown with --nocapture"
)]
fn a_five_percent_drop_at_cv_one_percent_is_worse() {
    let c = tally(1000, 0.05, 0.01);
    eprintln!("5% drop, CV 1%: {c:?} [worse, inconclusive, same, better]");
    assert!(c[WORSE] >= 990, "{c:?}");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the counts docs/bench.md quotes, shown with --nocapture"
)]
fn a_two_percent_drop_at_cv_ten_percent_is_inconclusive() {
    let c = tally(500, 0.02, 0.10);
    eprintln!("2% drop, CV 10%: {c:?} [worse, inconclusive, same, better]");
    assert!(c[INCONCLUSIVE] >= 450, "{c:?}");
    assert!(c[WORSE] <= 25 && c[SAME] == 0, "{c:?}");
}

#[test]
fn intervals_are_reproducible_and_ordered() {
    let base = [10.0, 10.2, 9.9, 10.1, 10.0];
    let new = [9.0, 9.1, 8.9, 9.2, 9.0];
    let s = Settings::default();
    let a = ratio_of_medians(&base, &new, &s, 1).expect("r");
    assert_eq!(Some(a), ratio_of_medians(&base, &new, &s, 1));
    assert!(a.lo <= a.ratio && a.ratio <= a.hi, "{a:?}");
    assert!((a.ratio - 0.9).abs() < 1e-9);
    assert_eq!(verdict(&a, 0.03), Verdict::Worse);
    assert_eq!(ratio_of_medians(&[], &new, &s, 1), None);
    let mut even = [4.0, 1.0, 3.0, 2.0];
    assert_eq!(median(&mut even), 2.5);
}
