//! The catalog: which products exist, what they cost, and how much stock inventory starts with.
//! The orchestrator prices orders from it and inventory seeds its stock from it, so both must
//! load the same file (`CATALOG`), or both use the built-in default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, ProductId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price_cents: Cents,
    /// Units in stock when inventory starts with an empty store.
    pub stock: u64,
}

/// Built only through [`Catalog::new`], which checks it and indexes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    products: Vec<Product>,
    #[serde(skip)]
    index: BTreeMap<ProductId, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("catalog {path} is not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("catalog {path} is not valid TOML: {source}")]
    Toml { path: String, source: toml::de::Error },
    #[error("catalog lists product {0} twice")]
    Duplicate(String),
    #[error("catalog has no products")]
    Empty,
}

#[derive(Deserialize)]
struct CatalogFile {
    products: Vec<Product>,
}

impl Catalog {
    pub fn new(products: Vec<Product>) -> Result<Self, CatalogError> {
        if products.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut index = BTreeMap::new();
        for (i, p) in products.iter().enumerate() {
            if index.insert(p.id.clone(), i).is_some() {
                return Err(CatalogError::Duplicate(p.id.to_string()));
            }
        }
        Ok(Self { products, index })
    }

    /// The default catalog: the products of the published example (`abc`, `xyz`) and a few more.
    /// Stock is large, so that long demo and chaos runs do not sell out by accident; an
    /// out-of-stock order is one that asks for more than exists.
    pub fn builtin() -> Self {
        let product = |id: &str, name: &str, price: u64, stock: u64| Product {
            id: ProductId::parse(id).expect("built-in ids are valid"),
            name: name.into(),
            price_cents: Cents(price),
            stock,
        };
        Self::new(vec![
            product("abc", "Alpine backpack", 4_999, 100_000),
            product("xyz", "Xylophone", 12_950, 100_000),
            product("def", "Desk fan", 2_450, 100_000),
            product("ghi", "Glass hourglass", 1_299, 100_000),
            product("jkl", "Juggling kit", 1_875, 100_000),
            product("mno", "Moka pot", 3_600, 100_000),
        ])
        .expect("the built-in catalog is valid")
    }

    /// Loads a catalog file: TOML if the name ends in `.toml`, JSON otherwise. Both have a
    /// `products` list of `{ id, name, priceCents, stock }`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogError::Read { path: shown.clone(), source })?;
        let file: CatalogFile = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|source| CatalogError::Toml { path: shown, source })?
        } else {
            serde_json::from_str(&text).map_err(|source| CatalogError::Json { path: shown, source })?
        };
        Self::new(file.products)
    }

    /// `load(path)` when a path is given, else the built-in catalog.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Self, CatalogError> {
        path.map_or_else(|| Ok(Self::builtin()), Self::load)
    }

    pub fn get(&self, id: &ProductId) -> Option<&Product> {
        self.index.get(id).map(|&i| &self.products[i])
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_published_example_products() {
        let c = Catalog::builtin();
        assert!(c.get(&ProductId::parse("abc").unwrap()).is_some());
        assert!(c.get(&ProductId::parse("xyz").unwrap()).is_some());
    }

    #[test]
    fn loads_json_and_toml_alike() {
        let dir = std::env::temp_dir().join(format!("sagaflow-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("c.json");
        std::fs::write(&json, r#"{"products":[{"id":"p1","name":"One","priceCents":100,"stock":5}]}"#)
            .unwrap();
        let toml = dir.join("c.toml");
        std::fs::write(&toml, "[[products]]\nid = \"p1\"\nname = \"One\"\npriceCents = 100\nstock = 5\n")
            .unwrap();
        assert_eq!(Catalog::load(&json).unwrap(), Catalog::load(&toml).unwrap());
        std::fs::write(&json, r#"{"products":[]}"#).unwrap();
        assert!(matches!(Catalog::load(&json), Err(CatalogError::Empty)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
