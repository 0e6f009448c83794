// AdminService: agencies, tokens, audit verification. Admins only.
#include "ballistics/v1/admin.grpc.pb.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
namespace v1 = ::ballistics::v1;
using store::ApiRole;

StatusOr<ApiRole> FromProto(v1::Role r) {
  switch (r) {
    case v1::TECHNICIAN: return ApiRole::kTechnician;
    case v1::EXAMINER: return ApiRole::kExaminer;
    case v1::AGENCY_READER: return ApiRole::kAgencyReader;
    case v1::ADMIN: return ApiRole::kAdmin;
    default: return InvalidArgument("role " + std::to_string(static_cast<int>(r)) + " is not set or unknown");
  }
}

// Anchored head (VerifyAuditRequest.expect_head_*): row `seq` must still carry `hash`.
Status CheckAnchor(store::ApiDb& db, std::int64_t seq, const std::string& hash, store::AuditVerifyReport& rep) {
  if (!rep.ok) return Status::Ok();  // the chain itself is broken: that problem is reported first
  auto at = db.AuditRowHashAt(seq);
  if (at.status().code() == StatusCode::kNotFound) {
    rep.ok = false;
    rep.problem = "anchored head seq " + std::to_string(seq) + " is missing: rows after seq " +
                  std::to_string(rep.head_seq) + " were deleted";
    return Status::Ok();
  }
  BALLISTICS_RETURN_IF_ERROR(at.status());
  if (*at != hash) {
    rep.ok = false;
    rep.problem = "audit row seq " + std::to_string(seq) + " has hash " + *at + ", not the anchored " + hash +
                  " (the chain was rewritten)";
  }
  return Status::Ok();
}

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::Status CreateAgency(ServerContext* sc, const v1::CreateAgencyRequest* req, v1::Agency* out) override {
    return Run(sc, "CreateAgency", [&](Call& call, DbPool::Lease& db) -> Status {
      BALLISTICS_ASSIGN_OR_RETURN(std::int64_t id, db->CreateAgency(req->name()));
      call.AddRecord("agency:" + std::to_string(id));
      out->set_agency_id(id);
      out->set_name(req->name());
      return Status::Ok();
    });
  }

  grpc::Status ListAgencies(ServerContext* sc, const v1::ListAgenciesRequest*,
                            v1::ListAgenciesResponse* out) override {
    return Run(sc, "ListAgencies", [&](Call&, DbPool::Lease& db) -> Status {
      BALLISTICS_ASSIGN_OR_RETURN(auto rows, db->ListAgencies());
      for (const auto& a : rows) {
        v1::Agency* p = out->add_agencies();
        p->set_agency_id(a.id);
        p->set_name(a.name);
      }
      return Status::Ok();
    });
  }

  grpc::Status CreateToken(ServerContext* sc, const v1::CreateTokenRequest* req,
                           v1::CreateTokenResponse* out) override {
    return Run(sc, "CreateToken", [&](Call& call, DbPool::Lease& db) -> Status {
      BALLISTICS_ASSIGN_OR_RETURN(ApiRole role, FromProto(req->role()));
      BALLISTICS_ASSIGN_OR_RETURN(auto t, db->CreateToken(req->agency(), role, req->holder(), req->valid_days()));
      // The secret never goes into the audit trail or the logs.
      call.AddRecord("token:" + std::to_string(t.token_id));
      call.SetDetail("agency=" + req->agency() + " role=" + std::string(store::ApiRoleName(role)) +
                     " holder=" + req->holder());
      out->set_token_id(t.token_id);
      out->set_token(t.secret);
      return Status::Ok();
    });
  }

  grpc::Status RevokeToken(ServerContext* sc, const v1::RevokeTokenRequest* req, v1::RevokeTokenResponse*) override {
    return Run(sc, "RevokeToken", [&](Call& call, DbPool::Lease& db) -> Status {
      call.AddRecord("token:" + std::to_string(req->token_id()));
      return db->RevokeToken(req->token_id());
    });
  }

  grpc::Status VerifyAudit(ServerContext* sc, const v1::VerifyAuditRequest* req,
                           v1::VerifyAuditResponse* out) override {
    return Run(sc, "VerifyAudit", [&](Call& call, DbPool::Lease& db) -> Status {
      if (req->expect_head_seq() < 0 || (req->expect_head_seq() > 0) != !req->expect_head_hash().empty()) {
        return InvalidArgument("expect_head_seq " + std::to_string(req->expect_head_seq()) +
                               " and expect_head_hash must be given together (seq > 0)");
      }
      BALLISTICS_ASSIGN_OR_RETURN(auto rep, db->VerifyAudit());
      if (req->expect_head_seq() > 0) {
        call.SetDetail("expect_head=" + std::to_string(req->expect_head_seq()) + ":" + req->expect_head_hash());
        BALLISTICS_RETURN_IF_ERROR(CheckAnchor(*db, req->expect_head_seq(), req->expect_head_hash(), rep));
      }
      out->set_ok(rep.ok);
      out->set_rows(rep.rows);
      out->set_head_seq(rep.head_seq);
      out->set_head_hash(rep.head_hash);
      out->set_problem(rep.problem);
      return Status::Ok();
    });
  }

 private:
  template <typename F>
  grpc::Status Run(ServerContext* sc, const std::string& name, F&& body) {
    Call call(ctx_, sc, "/ballistics.v1.AdminService/" + name);
    grpc::Status st = call.Authorize({ApiRole::kAdmin});
    if (!st.ok()) return call.Finish(st);
    auto lease = ctx_.pool->Acquire();
    if (!lease.ok()) return call.Finish(ToGrpc(lease.status()));
    Status s = body(call, *lease);
    lease->Check(s);
    return call.Finish(ToGrpc(s));
  }

  ServiceContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeAdminService(ServiceContext& ctx) {
  return std::make_unique<AdminServiceImpl>(ctx);
}

}  // namespace ballistics::service
