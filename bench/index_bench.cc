#include <chrono>
#include <cstdio>
#include <map>
#include <fstream>
#include <sstream>
#include <random>
#include <algorithm>
#include "ballistics/synth.h"
#include "ballistics/index.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
using namespace ballistics;
int main(int argc, char** argv){
  DescriptorConfig dc;
  if (argc > 1) dc.coarse_pixel_um = atof(argv[1]);
  if (argc > 2) dc.lowpass_um = atof(argv[2]);
  if (argc > 3) dc.ring_step_um = atof(argv[3]);
  if (argc > 4) dc.rings = atoi(argv[4]);
  if (argc > 5) dc.frequencies = atoi(argv[5]);
  if (argc > 6) dc.ring_min_um = atof(argv[6]);
  if (argc > 7) dc.fit_rim_centre = atoi(argv[7]);
  std::ifstream gt("/work/shared/data/fadul/ground_truth.csv"); std::string line; std::getline(gt,line);
  std::vector<std::string> names; std::vector<int> slide;
  while(std::getline(gt,line)){ std::stringstream ss(line); std::string a,b; std::getline(ss,a,','); std::getline(ss,b,','); names.push_back(a); slide.push_back(std::stoi(b)); }
  std::vector<CoarseDescriptor> d, dt; std::mt19937 rng(5);
  for (auto& n : names) {
    auto scan = ReadScanFile("/work/shared/data/fadul/" + n + ".x3p").value();
    auto s = Normalize(scan).value();
    d.push_back(ComputeDescriptor(s.breech_face, dc).value());
    double a = std::uniform_real_distribution<double>(-180,180)(rng);
    auto ts = TurnScan(scan, a, 0, 0).value();
    auto s2 = Normalize(ts).value();
    dt.push_back(ComputeDescriptor(s2.breech_face, dc).value());
  }
  // turned queries vs unturned database: rank of mates among the 39 others
  double km=0, knm=0; int nkm=0, nknm=0; int top1=0, allin5=0; std::vector<int> ranks;
  double self=0;
  for (size_t i=0;i<names.size();i++){
    self += DescriptorSimilarity(dt[i], d[i]);
    std::vector<std::pair<float,int>> sc;
    for (size_t j=0;j<names.size();j++) if (j!=i) { float s = DescriptorSimilarity(dt[i], d[j]); sc.push_back({s,(int)j}); if (slide[i]==slide[j]) {km+=s;nkm++;} else {knm+=s;nknm++;} }
    std::sort(sc.rbegin(), sc.rend());
    for (size_t r=0;r<sc.size();r++) if (slide[sc[r].second]==slide[i]) ranks.push_back(r+1);
  }
  std::sort(ranks.begin(), ranks.end());
  int r1=0,r3=0,r5=0,r10=0; for(int r:ranks){ r1+=r<=1; r3+=r<=3; r5+=r<=5; r10+=r<=10; }
  printf("self(turned) %.3f KM mean %.3f KNM mean %.3f | mates %zu: rank1 %d <=3 %d <=5 %d <=10 %d worst %d\n", self/names.size(), km/nkm, knm/nknm, ranks.size(), r1, r3, r5, r10, ranks.back());
}
