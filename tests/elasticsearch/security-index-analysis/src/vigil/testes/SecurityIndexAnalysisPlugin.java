/*
 * Test-only Elasticsearch plugin for tests/elasticsearch/start --secure.
 *
 * The integ-test-zip distribution has no analysis-common module, but the
 * mapping of the security system index (.security-7) uses an "email" analyzer
 * built from three analysis-common components:
 *
 *   tokenizer uax_url_email, filters pattern_capture and unique
 *
 * Without them the index cannot be created, and so API keys, native users and
 * roles fail with "Unknown filter type [pattern_capture] for [email]".
 *
 * This plugin registers exactly those three names. The tokenizer and
 * pattern_capture are Lucene's own classes (as in analysis-common); unique is
 * a small re-implementation of analysis-common's UniqueTokenFilter. Nothing
 * else of analysis-common is provided. Not for production use.
 */
package vigil.testes;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

public class SecurityIndexAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", (indexSettings, env, name, settings) -> {
            int maxTokenLength = settings.getAsInt("max_token_length", 255);
            return TokenizerFactory.newFactory(name, () -> {
                UAX29URLEmailTokenizer t = new UAX29URLEmailTokenizer();
                t.setMaxTokenLength(maxTokenLength);
                return t;
            });
        });
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture", AnalysisPlugin.requiresAnalysisSettings(SecurityIndexAnalysisPlugin::patternCapture),
            "unique", SecurityIndexAnalysisPlugin::unique
        );
    }

    private static TokenFilterFactory patternCapture(Object indexSettings, Object env, String name, Settings settings) {
        List<String> regexes = settings.getAsList("patterns");
        if (regexes.isEmpty()) {
            throw new IllegalArgumentException("required setting 'patterns' is missing for token filter [" + name + "]");
        }
        Pattern[] patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
        boolean preserveOriginal = settings.getAsBoolean("preserve_original", true);
        return factory(name, in -> new PatternCaptureGroupTokenFilter(in, preserveOriginal, patterns));
    }

    private static TokenFilterFactory unique(Object indexSettings, Object env, String name, Settings settings) {
        boolean onlyOnSamePosition = settings.getAsBoolean("only_on_same_position", false);
        return factory(name, in -> new UniqueTokenFilter(in, onlyOnSamePosition));
    }

    private interface Wrap {
        TokenStream apply(TokenStream in);
    }

    private static TokenFilterFactory factory(String name, Wrap wrap) {
        return new TokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream tokenStream) {
                return wrap.apply(tokenStream);
            }
        };
    }

    /** Drops tokens whose term was already seen (in the stream, or at the same position). */
    static final class UniqueTokenFilter extends TokenFilter {
        private final CharTermAttribute termAttribute = addAttribute(CharTermAttribute.class);
        private final PositionIncrementAttribute posIncAttribute = addAttribute(PositionIncrementAttribute.class);
        private final CharArraySet previous = new CharArraySet(8, false);
        private final boolean onlyOnSamePosition;

        UniqueTokenFilter(TokenStream in, boolean onlyOnSamePosition) {
            super(in);
            this.onlyOnSamePosition = onlyOnSamePosition;
        }

        @Override
        public boolean incrementToken() throws IOException {
            while (input.incrementToken()) {
                final char[] term = termAttribute.buffer();
                final int length = termAttribute.length();
                if (onlyOnSamePosition && posIncAttribute.getPositionIncrement() > 0) {
                    previous.clear();
                }
                final boolean duplicate = previous.contains(term, 0, length);
                char[] saved = new char[length];
                System.arraycopy(term, 0, saved, 0, length);
                previous.add(saved);
                if (duplicate == false) {
                    return true;
                }
            }
            return false;
        }

        @Override
        public void reset() throws IOException {
            super.reset();
            previous.clear();
        }
    }
}
