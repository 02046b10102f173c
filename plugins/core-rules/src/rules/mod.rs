//! One module per rule; each module's documentation says what triggers the rule and what
//! its relevance means.

pub mod dangerous_medical_advice;
pub mod harassment;
pub mod hate_stereotypes;
pub mod illegal_facilitation;
pub mod operational_harm;
pub mod over_refusal;
pub mod pii_leak;
pub mod refusal_appropriateness;
pub mod self_harm_safety;
pub mod sexual_content_minors;

pub use dangerous_medical_advice::DangerousMedicalAdvice;
pub use harassment::Harassment;
pub use hate_stereotypes::HateStereotypes;
pub use illegal_facilitation::IllegalFacilitation;
pub use operational_harm::OperationalHarm;
pub use over_refusal::OverRefusal;
pub use pii_leak::PiiLeak;
pub use refusal_appropriateness::RefusalAppropriateness;
pub use self_harm_safety::SelfHarmSafety;
pub use sexual_content_minors::SexualContentMinors;
