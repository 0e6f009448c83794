// Tests of the synthetic casing generator. Correlations here use a plain
// normalized cross-correlation at the *known* alignment (from ShotTruth), so they
// do not depend on the correlation engine.
#include "ballistics/synth.h"

#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

namespace ballistics::synth {
namespace {

// Pearson correlation over points finite in both.
double Ncc(const cv::Mat1f& a, const cv::Mat1f& b, std::size_t* overlap = nullptr) {
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  std::size_t n = 0;
  for (int r = 0; r < a.rows; ++r) {
    for (int c = 0; c < a.cols; ++c) {
      const double x = a(r, c), y = b(r, c);
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      sa += x, sb += y, saa += x * x, sbb += y * y, sab += x * y;
      ++n;
    }
  }
  if (overlap) *overlap = n;
  if (n < 2) return 0.0;
  const double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
  return cov / std::sqrt(va * vb);
}

bool BitIdentical(const cv::Mat1f& a, const cv::Mat1f& b) {
  if (a.size() != b.size()) return false;
  for (int r = 0; r < a.rows; ++r) {
    if (std::memcmp(a[r], b[r], sizeof(float) * static_cast<std::size_t>(a.cols)) != 0) return false;
  }
  return true;
}

// Puts `from` onto `to`'s grid using both truths (bilinear; NaN where any neighbour is NaN).
cv::Mat1f WarpOnto(const cv::Mat1f& from, const ShotTruth& tf, const cv::Size& to_size, const ShotTruth& tt,
                   double pixel_um) {
  const cv::Matx23d m = ImageToImagePixels(tf, from.size(), tt, to_size, pixel_um);
  cv::Mat1f out;
  cv::warpAffine(from, out, m, to_size, cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  return out;
}

FirearmSurface Render(std::uint64_t seed, double pixel_um = 6.25) {
  auto s = RenderFirearm(MakeFirearm(seed), pixel_um);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

TEST(SynthFirearm, SameSeedSameFirearmBitForBit) {
  const FirearmModel a = MakeFirearm(42), b = MakeFirearm(42), c = MakeFirearm(43);
  EXPECT_EQ(a.texture, b.texture);
  EXPECT_EQ(a.mark_rms_um, b.mark_rms_um);
  EXPECT_EQ(a.fp_radius_um, b.fp_radius_um);
  EXPECT_NE(a.mark_rms_um, c.mark_rms_um);
  const FirearmSurface sa = Render(42), sb = Render(42);
  EXPECT_TRUE(BitIdentical(sa.breech_face_um, sb.breech_face_um));
  EXPECT_TRUE(BitIdentical(sa.firing_pin_um, sb.firing_pin_um));
}

TEST(SynthFirearm, AllTextureClassesAndPinShapesOccur) {
  int textures[4] = {0, 0, 0, 0}, shapes[3] = {0, 0, 0};
  for (std::uint64_t s = 0; s < 200; ++s) {
    const FirearmModel g = MakeFirearm(s);
    ++textures[static_cast<int>(g.texture)];
    ++shapes[static_cast<int>(g.fp_shape)];
    EXPECT_GT(g.aperture_radius_um, g.fp_radius_um) << "seed " << s;
  }
  for (int i = 0; i < 4; ++i) EXPECT_GT(textures[i], 0) << BreechTextureName(static_cast<BreechTexture>(i));
  for (int i = 0; i < 3; ++i) EXPECT_GT(shapes[i], 0) << FiringPinShapeName(static_cast<FiringPinShape>(i));
}

TEST(SynthFirearm, RenderedRmsIsTheModelsRms) {
  const FirearmSurface s = Render(7);
  cv::Scalar mean, sd;
  cv::meanStdDev(s.breech_face_um, mean, sd);
  EXPECT_NEAR(sd[0], s.model.mark_rms_um, 0.02 * s.model.mark_rms_um);
  EXPECT_NEAR(mean[0], 0.0, 0.01);
}

// The fields are defined in the continuous plane: rendering at 12.5 µm samples the
// same surface as at 6.25 µm (every other point), up to the content between the
// two Nyquist limits (wavelengths 12.5 to 25 µm, mostly removed by the 16 µm low-pass).
TEST(SynthFirearm, SameMarksAtAnotherPixelSize) {
  const FirearmSurface fine = Render(11, 6.25), coarse = Render(11, 12.5);
  ASSERT_EQ(fine.breech_face_um.cols, 2 * coarse.breech_face_um.cols);
  cv::Mat1f sub(coarse.breech_face_um.size());
  for (int r = 0; r < sub.rows; ++r)
    for (int c = 0; c < sub.cols; ++c) sub(r, c) = fine.breech_face_um(2 * r, 2 * c);
  EXPECT_GT(Ncc(sub, coarse.breech_face_um), 0.95);
  // A different firearm at the same pixel size does not look alike.
  EXPECT_LT(std::abs(Ncc(coarse.breech_face_um, Render(12, 12.5).breech_face_um)), 0.05);
}

// Parallel filed marks: the surface stays alike along the grooves and changes across them.
TEST(SynthFirearm, FiledMarksAreDirectional) {
  FirearmModel g = MakeFirearm(3);
  g.texture = BreechTexture::kParallelFiled;
  g.isotropic_share = 0.2;
  g.mark_direction_deg = 30.0;  // groove normal
  auto s = RenderFirearm(g, 6.25);
  ASSERT_TRUE(s.ok());
  const cv::Mat1f& m = s->breech_face_um;
  const double lag_px = 60.0 / s->pixel_um;  // 60 µm, past the isotropic correlation length
  const double a = 30.0 * std::numbers::pi / 180.0;
  auto shifted_corr = [&](double dx, double dy) {
    cv::Mat1f moved;
    cv::warpAffine(m, moved, cv::Matx23d(1, 0, dx, 0, 1, dy), m.size(), cv::INTER_LINEAR, cv::BORDER_WRAP);
    return Ncc(m, moved);
  };
  const double along = shifted_corr(-std::sin(a) * lag_px, std::cos(a) * lag_px);
  const double across = shifted_corr(std::cos(a) * lag_px, std::sin(a) * lag_px);
  EXPECT_GT(along, across + 0.3) << "along " << along << " across " << across;
}

// Siblings of a family share family_share of the mark variance: their maps correlate
// at about that value; the family's model parameters are inherited.
TEST(SynthFirearm, FamilySiblingsShareTheFamilyShare) {
  const FirearmModel a = MakeFirearmInFamily(1, 77, 0.3), b = MakeFirearmInFamily(2, 77, 0.3);
  EXPECT_EQ(a.texture, MakeFirearm(77).texture);
  EXPECT_EQ(a.aperture_radius_um, b.aperture_radius_um);
  EXPECT_NE(a.seed, b.seed);
  const cv::Mat1f ma = RenderFirearm(a, 12.5).value().breech_face_um;
  const cv::Mat1f mb = RenderFirearm(b, 12.5).value().breech_face_um;
  EXPECT_NEAR(Ncc(ma, mb), 0.3, 0.06);
  const cv::Mat1f unrelated = RenderFirearm(MakeFirearm(2), 12.5).value().breech_face_um;
  EXPECT_LT(std::abs(Ncc(ma, unrelated)), 0.05);
  FirearmModel bad = a;
  bad.family_share = 1.5;
  EXPECT_FALSE(RenderFirearm(bad, 12.5).ok());
}

TEST(SynthShot, SameSeedsGiveBitIdenticalSignaturesAndScans) {
  const FirearmSurface gun = Render(5);
  ShotOptions o;
  o.max_dropout_fraction = 0.1;
  ShotTruth t1, t2;
  auto a = MakeShotSignature(gun, 9, o, &t1);
  auto b = MakeShotSignature(gun, 9, o, &t2);
  auto c = MakeShotSignature(gun, 10, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(BitIdentical(a->values, b->values));
  EXPECT_FALSE(BitIdentical(a->values, c->values));
  EXPECT_EQ(t1.rotation_deg, t2.rotation_deg);
  EXPECT_EQ(t1.shift_x_um, t2.shift_x_um);
  // The overload that renders the firearm itself gives the same shot.
  auto d = MakeShotSignature(MakeFirearm(5), 9, o);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(BitIdentical(a->values, d->values));
  auto s1 = MakeShotScan(gun, 9, o), s2 = MakeShotScan(gun, 9, o);
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_TRUE(BitIdentical(s1->values, s2->values));
}

// With full transfer and no per-shot variation, the shot is the firearm's map seen
// through the ground-truth rotation and shift; a wrong angle does not fit.
TEST(SynthShot, GroundTruthIsTheAppliedRotationAndShift) {
  const FirearmSurface gun = Render(8);
  ShotOptions o;
  o.mark_transfer = 1.0;
  o.mark_transfer_spread = 0.0;
  o.contact_variation = 0.0;
  o.deformation_um = 0.0;
  o.noise_um = 0.0;
  o.max_dropout_fraction = 0.0;
  o.max_shift_um = 300.0;
  for (std::uint64_t shot = 0; shot < 4; ++shot) {
    ShotTruth t;
    auto sig = MakeShotSignature(gun, shot, o, &t);
    ASSERT_TRUE(sig.ok());
    auto expected_for = [&](double rotation_deg) {
      ShotTruth tt = t;
      tt.rotation_deg = rotation_deg;
      // gun map pixel -> gun µm -> image pixel.
      const cv::Matx23d g2i = GunToImagePixels(tt, sig->values.size(), o.pixel_um);
      const double gp = gun.pixel_um, cx = gun.breech_face_um.cols / 2, cy = gun.breech_face_um.rows / 2;
      const cv::Matx33d map2gun(gp, 0, -cx * gp, 0, gp, -cy * gp, 0, 0, 1);
      const cv::Matx33d g3(g2i(0, 0), g2i(0, 1), g2i(0, 2), g2i(1, 0), g2i(1, 1), g2i(1, 2), 0, 0, 1);
      const cv::Matx33d m = g3 * map2gun;
      cv::Mat1f out;
      cv::warpAffine(gun.breech_face_um, out, cv::Matx23d(m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2)),
                     sig->values.size(), cv::INTER_LINEAR, cv::BORDER_WRAP);
      return out;
    };
    EXPECT_GT(Ncc(sig->values, expected_for(t.rotation_deg)), 0.99) << "shot " << shot;
    EXPECT_LT(Ncc(sig->values, expected_for(t.rotation_deg + 5.0)), 0.3) << "shot " << shot;
  }
}

struct Shot {
  Signature sig;
  ShotTruth truth;
};

std::vector<std::vector<Shot>> MakeShots(int guns, int shots, const ShotOptions& o) {
  std::vector<std::vector<Shot>> out;
  for (int g = 0; g < guns; ++g) {
    const FirearmSurface gun = Render(1000 + g, o.pixel_um);
    out.emplace_back();
    for (int s = 0; s < shots; ++s) {
      Shot shot;
      auto sig = MakeShotSignature(gun, s, o, &shot.truth);
      EXPECT_TRUE(sig.ok());
      shot.sig = std::move(sig).value();
      out.back().push_back(std::move(shot));
    }
  }
  return out;
}

// Two shots of one firearm share its marks (correlation about sqrt(t1 t2) times the
// contact overlap: 0.65..0.9 x ~0.9 with the defaults); shots of different firearms
// share nothing (|r| ~ 1/sqrt(independent patches) ~ 0.02).
// knm_ceiling follows from the region size: |r| of independent surfaces spreads as
// 1/sqrt(independent patches); a 3.5 mm^2 annulus holds ~1000 patches of the ~60 µm
// correlation length, a firing-pin impression ~100 (max of 54 pairs ~ 3 sigma).
void ExpectMatesCorrelate(const ShotOptions& o, double km_floor, double knm_ceiling, double ratio) {
  const auto shots = MakeShots(4, 3, o);
  double km_min = 1.0, knm_max = -1.0;
  for (std::size_t g1 = 0; g1 < shots.size(); ++g1) {
    for (std::size_t s1 = 0; s1 < shots[g1].size(); ++s1) {
      for (std::size_t g2 = g1; g2 < shots.size(); ++g2) {
        for (std::size_t s2 = (g1 == g2 ? s1 + 1 : 0); s2 < shots[g2].size(); ++s2) {
          const Shot& a = shots[g1][s1];
          const Shot& b = shots[g2][s2];
          const cv::Mat1f moved = WarpOnto(b.sig.values, b.truth, a.sig.values.size(), a.truth, o.pixel_um);
          std::size_t overlap = 0;
          const double r = Ncc(a.sig.values, moved, &overlap);
          if (g1 == g2) {
            EXPECT_GT(overlap, 1000u);
            km_min = std::min(km_min, r);
          } else if (overlap > 1000) {
            knm_max = std::max(knm_max, std::abs(r));
          }
        }
      }
    }
  }
  EXPECT_GT(km_min, km_floor);
  EXPECT_LT(knm_max, knm_ceiling);
  EXPECT_GT(km_min, ratio * knm_max);
}

TEST(SynthShot, MatesCorrelateNonMatesDoNot) {
  ShotOptions o;
  o.max_dropout_fraction = 0.1;
  ExpectMatesCorrelate(o, 0.25, 0.1, 3.0);
}

TEST(SynthShot, FiringPinMatesCorrelateNonMatesDoNot) {
  ShotOptions o;
  o.kind = SignatureKind::kFiringPin;
  ExpectMatesCorrelate(o, 0.25, 0.3, 1.0);
}

// The transfer knob does what it says: less transfer, lower mate correlation.
TEST(SynthShot, TransferKnobOrdersMateCorrelation) {
  const FirearmSurface gun = Render(21);
  auto mean_km = [&](double transfer) {
    ShotOptions o;
    o.mark_transfer = transfer;
    o.mark_transfer_spread = 0.0;
    o.contact_variation = 0.0;
    std::vector<Shot> s(3);
    for (int i = 0; i < 3; ++i) {
      s[i].sig = MakeShotSignature(gun, i, o, &s[i].truth).value();
    }
    double sum = 0;
    int n = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = i + 1; j < 3; ++j, ++n)
        sum += Ncc(s[i].sig.values, WarpOnto(s[j].sig.values, s[j].truth, s[i].sig.values.size(), s[i].truth, 6.25));
    return sum / n;
  };
  const double low = mean_km(0.3), high = mean_km(0.8);
  // Without contact variation the expected correlation is about the transfer itself,
  // less a little for deformation, noise and interpolation.
  EXPECT_NEAR(low, 0.3, 0.08);
  EXPECT_NEAR(high, 0.8, 0.1);
}

// Missing share inside the annulus, recounted here from the truth's geometry.
TEST(SynthShot, MissingFractionWithinRequestedRange) {
  const FirearmSurface gun = Render(31);
  ShotOptions o;
  o.min_dropout_fraction = 0.05;
  o.max_dropout_fraction = 0.2;
  for (std::uint64_t shot = 0; shot < 12; ++shot) {
    ShotTruth t;
    auto sig = MakeShotSignature(gun, shot, o, &t);
    ASSERT_TRUE(sig.ok());
    EXPECT_GE(t.dropout_fraction, o.min_dropout_fraction);
    EXPECT_LE(t.dropout_fraction, o.max_dropout_fraction);
    const double a = t.rotation_deg * std::numbers::pi / 180.0;
    const double pcx = std::cos(a) * t.primer_offset_um_x - std::sin(a) * t.primer_offset_um_y + t.shift_x_um;
    const double pcy = std::sin(a) * t.primer_offset_um_x + std::cos(a) * t.primer_offset_um_y + t.shift_y_um;
    const double centre = 0.5 * (sig->values.cols - 1);
    std::size_t region = 0, nan = 0;
    for (int r = 0; r < sig->values.rows; ++r) {
      for (int c = 0; c < sig->values.cols; ++c) {
        const double qx = (c - centre) * o.pixel_um, qy = (r - centre) * o.pixel_um;
        const double dp = std::hypot(qx - pcx, qy - pcy), df = std::hypot(qx - t.shift_x_um, qy - t.shift_y_um);
        // Skip a one-pixel band at the edges, where rounding may go either way.
        if (dp > t.outer_radius_um - o.pixel_um || df < t.inner_radius_um + o.pixel_um) {
          if (dp > t.outer_radius_um + o.pixel_um || df < t.inner_radius_um - o.pixel_um) {
            EXPECT_TRUE(std::isnan(sig->values(r, c))) << "valid point outside the annulus at " << r << "," << c;
          }
          continue;
        }
        ++region;
        nan += std::isnan(sig->values(r, c));
      }
    }
    const double missing = static_cast<double>(nan) / region;
    EXPECT_NEAR(missing, t.missing_fraction, 0.01);
    EXPECT_GE(missing, o.min_dropout_fraction - 0.01) << "shot " << shot;
    EXPECT_LE(missing, o.max_dropout_fraction + 0.01) << "shot " << shot;
  }
  // No dropouts asked: nothing missing inside the annulus.
  o.min_dropout_fraction = o.max_dropout_fraction = 0.0;
  ShotTruth t;
  ASSERT_TRUE(MakeShotSignature(gun, 1, o, &t).ok());
  EXPECT_EQ(t.missing_fraction, 0.0);
}

TEST(SynthShot, SignatureLooksNormalized) {
  const FirearmSurface gun = Render(41);
  ShotOptions o;
  auto sig = MakeShotSignature(gun, 0, o);
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->kind, SignatureKind::kBreechFace);
  EXPECT_EQ(sig->pixel_um, 6.25);
  EXPECT_EQ(sig->values.rows, sig->values.cols);
  EXPECT_NEAR(sig->quality.rms_height, gun.model.mark_rms_um, 0.05 * gun.model.mark_rms_um);
  // Annulus between the aperture (>= 1 mm) and 1.69 mm: 3 to 6 mm^2 less dropouts.
  EXPECT_GT(sig->quality.valid_area_mm2, 2.5);
  EXPECT_LT(sig->quality.valid_area_mm2, 6.0);
  EXPECT_TRUE(std::isnan(sig->values(sig->values.rows / 2, sig->values.cols / 2)));  // the aperture
  EXPECT_TRUE(std::isnan(sig->values(0, 0)));                                       // outside the primer
}

// The raw-like scan: firing-pin crater where the truth puts the firing pin, NaN
// outside the primer, heights in µm.
TEST(SynthShot, RawScanHasCraterAtTruthAndPrimerDisk) {
  const FirearmSurface gun = Render(51);
  ShotOptions o;
  o.max_tilt_deg = 0.0;
  o.max_dropout_fraction = 0.0;
  o.max_shift_um = 400.0;
  o.flowback_um = 40.0;
  ShotTruth t;
  auto scan = MakeShotScan(gun, 3, o, &t);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->modality, Modality::kTopography3d);
  EXPECT_EQ(scan->pixel_um_x, 6.25);
  // Deepest point of the primer's flat (the rounded edge falls lower than the crater).
  const double centre = 0.5 * (scan->values.cols - 1);
  const double a = t.rotation_deg * std::numbers::pi / 180.0;
  const double pcx = centre + (std::cos(a) * t.primer_offset_um_x - std::sin(a) * t.primer_offset_um_y + t.shift_x_um) / o.pixel_um;
  const double pcy = centre + (std::sin(a) * t.primer_offset_um_x + std::cos(a) * t.primer_offset_um_y + t.shift_y_um) / o.pixel_um;
  cv::Mat1b flat = cv::Mat1b::zeros(scan->values.size());
  cv::circle(flat, cv::Point(static_cast<int>(std::lround(pcx)), static_cast<int>(std::lround(pcy))),
             static_cast<int>(t.outer_radius_um / o.pixel_um), cv::Scalar(255), cv::FILLED);
  double min_v;
  cv::Point min_at;
  cv::minMaxLoc(scan->values, &min_v, nullptr, &min_at, nullptr, flat);
  // Deepest point: inside the firing-pin footprint (gun frame), as deep as the pin.
  const cv::Matx23d g2i = GunToImagePixels(t, scan->values.size(), o.pixel_um);
  cv::Matx23d i2g;
  cv::invertAffineTransform(g2i, i2g);
  const double px = i2g(0, 0) * min_at.x + i2g(0, 1) * min_at.y + i2g(0, 2);
  const double py = i2g(1, 0) * min_at.x + i2g(1, 1) * min_at.y + i2g(1, 2);
  EXPECT_LT(std::hypot(px, py), std::max(gun.model.fp_radius_um, gun.model.fp_radius_b_um));
  // Depth below the breech-face annulus (the scan has a random height offset): the pin's
  // depth less the flow-back plateau, give or take the marks (a few µm).
  std::vector<float> annulus;
  for (int r = 0; r < scan->values.rows; ++r) {
    for (int c = 0; c < scan->values.cols; ++c) {
      const double gx = i2g(0, 0) * c + i2g(0, 1) * r + i2g(0, 2), gy = i2g(1, 0) * c + i2g(1, 1) * r + i2g(1, 2);
      if (std::hypot(gx, gy) > t.inner_radius_um + 60 && std::hypot(c - pcx, r - pcy) * o.pixel_um < t.outer_radius_um - 30)
        annulus.push_back(scan->values(r, c));
    }
  }
  ASSERT_GT(annulus.size(), 1000u);
  std::nth_element(annulus.begin(), annulus.begin() + annulus.size() / 2, annulus.end());
  EXPECT_NEAR(annulus[annulus.size() / 2] - min_v, gun.model.fp_depth_um - o.flowback_um, 10.0);
  // The primer disk is valid, the corners are not.
  EXPECT_TRUE(std::isnan(scan->values(0, 0)));
  EXPECT_TRUE(std::isfinite(scan->values(static_cast<int>(pcy + 1500 / o.pixel_um), static_cast<int>(pcx))));
  EXPECT_NEAR(1.0 - scan->MissingFraction(),
              std::numbers::pi * o.primer_radius_um * o.primer_radius_um /
                  (scan->values.total() * o.pixel_um * o.pixel_um),
              0.01);
}

TEST(SynthShot, SteepFlanksDropOutWhenAsked) {
  const FirearmSurface gun = Render(52);
  ShotOptions o;
  o.max_dropout_fraction = 0.0;
  ShotTruth keep, lose;
  ASSERT_TRUE(MakeShotScan(gun, 1, o, &keep).ok());
  o.max_measurable_slope_deg = 17.0;
  ASSERT_TRUE(MakeShotScan(gun, 1, o, &lose).ok());
  EXPECT_EQ(keep.missing_fraction, 0.0);
  EXPECT_GT(lose.missing_fraction, 0.0);
}

TEST(SynthErrors, BadOptionsAreRejectedWithTheirName) {
  const FirearmSurface gun = Render(1);
  auto expect_bad = [&](ShotOptions o, const char* name) {
    auto s = MakeShotSignature(gun, 0, o);
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(name), std::string::npos) << s.status().message();
    EXPECT_FALSE(MakeShotScan(gun, 0, o).ok()) << name;
  };
  ShotOptions o;
  o.mark_transfer = 1.5;
  expect_bad(o, "mark_transfer");
  o = {};
  o.min_dropout_fraction = 0.3;
  o.max_dropout_fraction = 0.1;
  expect_bad(o, "min_dropout_fraction");
  o = {};
  o.pixel_um = 12.5;  // the surface was rendered for 6.25
  expect_bad(o, "pixel_um");
  o = {};
  o.noise_um = std::nan("");
  expect_bad(o, "noise_um");
  o = {};
  o.size_px = -3;
  expect_bad(o, "size_px");

  auto r = RenderFirearm(MakeFirearm(1), 0.0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pixel_um"), std::string::npos);
  FirearmModel bad = MakeFirearm(1);
  bad.fp_radius_um = -1.0;
  r = RenderFirearm(bad, 6.25);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("fp_radius_um"), std::string::npos);
}

}  // namespace
}  // namespace ballistics::synth
