-- Flash-sale coupons (DESIGN section 11): the stock of each coupon and who claimed it. The
-- constraints are the rules: never negative stock, never more claims than stock, never a user twice.

-- Up Migration
CREATE TABLE coupons (
  name text PRIMARY KEY,
  amount integer NOT NULL CHECK (amount > 0),
  remaining_amount integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT coupons_remaining_amount_check CHECK (remaining_amount >= 0 AND remaining_amount <= amount)
);

CREATE TABLE claims (
  -- Claim order: a claim takes the coupon's row lock before its id, so ids of one coupon follow commit order.
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  coupon_name text NOT NULL REFERENCES coupons (name) ON DELETE CASCADE,
  user_id text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT claims_user_id_coupon_name_key UNIQUE (user_id, coupon_name)
);

-- claimed_by in claim order, and the foreign key's lookups.
CREATE INDEX claims_coupon_name_id_idx ON claims (coupon_name, id);

-- Down Migration
DROP TABLE claims;
DROP TABLE coupons;
