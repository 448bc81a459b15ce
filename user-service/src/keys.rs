//! The RS256 key user-service signs tokens with, and the JWKS that publishes its public half.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

pub struct SigningKeys {
    encoding: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

impl SigningKeys {
    /// Reads a PEM private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        Self::from_encoding_key(EncodingKey::from_rsa_pem(pem)?)
    }

    /// A fresh 2048-bit key: fine locally, but tokens die with the process and replicas
    /// disagree, so production mounts a key file.
    pub fn generate() -> anyhow::Result<Self> {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let der = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
        Self::from_pem(service_kit::auth::pkcs8_pem(der.as_ref()).as_bytes())
    }

    fn from_encoding_key(encoding: EncodingKey) -> anyhow::Result<Self> {
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            anyhow::bail!("the signing key is not an RSA key");
        };
        // The key id is derived from the modulus, so every replica with the same key agrees.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rsa.n.as_bytes());
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(Self {
            encoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}
