//! Post transforms exactly as onnxruntime's `ml_common.h` computes them (in f32, including its
//! approximate `ErfInv` for PROBIT), so outputs match its golden values to float rounding.

use super::ensemble::PostTransform;

/// Accumulator precision: onnxruntime sums in the threshold type (f32, or f64 for
/// `*_as_tensor` doubles); summing in the same type keeps the same rounding.
pub(crate) trait Acc:
    Copy + Default + PartialOrd + std::ops::AddAssign + Send + Sync + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Acc for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Acc for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

pub fn softmax(values: &mut [f32]) {
    let v_max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - v_max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Softmax that leaves (near) zero scores out of the sum: a class no tree voted for stays 0.
pub fn softmax_zero(values: &mut [f32]) {
    let v_max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_v_max = (-v_max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - v_max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_v_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// onnxruntime's `write_scores`: `scores` has 1 or more live columns (`has` false reads as 0);
/// with one column, `second_class` picks how the second probability column is made.
pub(crate) fn write_scores(
    scores: &[f64],
    has: &[bool],
    post: PostTransform,
    second_class: i32,
    out: &mut [f32],
) {
    let value = |k: usize| if has[k] { scores[k] as f32 } else { 0.0 };
    if scores.len() >= 2 {
        for (k, o) in out.iter_mut().enumerate().take(scores.len()) {
            *o = value(k);
        }
        let live = &mut out[..scores.len()];
        match post {
            PostTransform::Probit => live.iter_mut().for_each(|v| *v = probit(*v)),
            PostTransform::Logistic => live.iter_mut().for_each(|v| *v = logistic(*v)),
            PostTransform::Softmax => softmax(live),
            PostTransform::SoftmaxZero => softmax_zero(live),
            PostTransform::None => {}
        }
        return;
    }
    let v = value(0);
    if post == PostTransform::Probit {
        out[0] = probit(v);
        // onnxruntime leaves the second column unwritten; a defined 0 is the closest we can do.
        out.iter_mut().skip(1).for_each(|o| *o = 0.0);
        return;
    }
    match second_class {
        0 | 1 => {
            out[0] = 1.0 - v;
            out[1] = v;
        }
        2 | 3 => {
            if post == PostTransform::Logistic {
                out[0] = logistic(-v);
                out[1] = logistic(v);
            } else {
                out[0] = -v;
                out[1] = v;
            }
        }
        _ => {
            out[0] = v;
            out.iter_mut().skip(1).for_each(|o| *o = 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(3.0) + logistic(-3.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn probit_inverts_normal_cdf_approximately() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.96).abs() < 1e-2);
    }

    #[test]
    fn softmax_zero_keeps_zero_columns_at_zero() {
        let mut v = [0.0f32, 1.0, 2.0];
        softmax_zero(&mut v);
        assert_eq!(v[0], 0.0);
        assert!((v[1] + v[2] - 1.0).abs() < 1e-6);
    }
}
