# T7 in R survey: design -> 500 Rao-Wu ("subbootstrap") replicates -> nonresponse adjustment
# by agency on every replicate -> rake (sex, age) -> svyby(svymean) of the 22 satisfied
# indicators by agency.  Called by r_peer.py:  Rscript r_t7.R data.csv margins.csv R out.csv
args <- commandArgs(trailingOnly = TRUE)
suppressMessages(library(survey))
tm <- function() proc.time()[["elapsed"]]
t0 <- tm()
df <- read.csv(args[1], stringsAsFactors = FALSE)
mg <- read.csv(args[2], stringsAsFactors = FALSE)
R <- as.integer(args[3])
sc <- sprintf("s%02d", 1:22)
t1 <- tm()
set.seed(11)
des <- svydesign(ids = ~1, strata = ~agency_id, weights = ~design_weight, data = df)
rep <- as.svrepdesign(des, type = "subbootstrap", replicates = R)
t2 <- tm()
# class nonresponse adjustment (R survey has no function for it): on the full-sample and every
# replicate weight, w * (sampled weight of the class) / (responding weight of the class) for
# respondents, 0 for nonrespondents
adjust <- function(W, cls, resp) {
  W <- as.matrix(W)
  samp <- rowsum(W, cls)
  rsp <- rowsum(W * resp, cls)
  W * resp * (samp / rsp)[as.character(cls), , drop = FALSE]
}
cls <- df$agency_id
resp <- as.numeric(df$responded == "True" | df$responded == "TRUE" | df$responded == 1)
pw <- adjust(weights(rep, "sampling"), cls, resp)[, 1]
rw <- adjust(weights(rep, "analysis"), cls, resp)
nr <- svrepdesign(data = df, repweights = rw, weights = pw, type = "other",
                  scale = rep$scale, rscales = rep$rscales, combined.weights = TRUE, mse = FALSE)
sex_pop <- mg[mg$variable == "sex", c("level", "Freq")]
names(sex_pop) <- c("sex", "Freq")
age_pop <- mg[mg$variable == "age", c("level", "Freq")]
names(age_pop) <- c("age", "Freq")
rk <- rake(nr, list(~sex, ~age), list(sex_pop, age_pop),
           control = list(maxit = 100, epsilon = 1e-10, verbose = FALSE))
t3 <- tm()
f <- as.formula(paste("~", paste(sc, collapse = "+")))
est <- svyby(f, ~agency_id, rk, svymean)
t4 <- tm()
se <- as.matrix(SE(est))
colnames(se) <- paste0("se.", sc)
o <- order(est$agency_id)
write.csv(data.frame(agency_id = est$agency_id[o], as.matrix(est[o, sc]), se[o, , drop = FALSE]),
          args[4], row.names = FALSE)
cat(sprintf("%.6f %.6f %.6f %.6f\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3),
    file = paste0(args[4], ".times"))
