// An independent check of hocba's evidence records with Bouncy Castle's ERS package.
// Usage: java ErsCheck EVIDENCE.ers DATA-FILE
// Prints one JSON object; exit 0 when the record covers the file and every archive
// timestamp's signature verifies with the certificate it names, 1 otherwise.
// java ErsCheck --batch reads "EVIDENCE<TAB>DATA" lines on stdin and prints one JSON
// object per line, in order (one JVM for many records); exit 0.
//
// The JSON also carries "record_validate": null when BC's own
// ERSEvidenceRecord.validate(verifier) passes, else its error. That method wants the
// last archive timestamp of the last chain to cover every earlier timestamp of that
// chain (BC's own renewal shape), not only the one before it (RFC 4998 section 5.2), so
// it is reported and not part of "valid" (docs/evidence-bouncycastle.md).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Security;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Date;
import java.util.List;
import java.util.TimeZone;

import org.bouncycastle.asn1.tsp.ArchiveTimeStamp;
import org.bouncycastle.asn1.tsp.ArchiveTimeStampChain;
import org.bouncycastle.asn1.tsp.EvidenceRecord;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.DigestCalculatorProvider;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;
import org.bouncycastle.tsp.TimeStampToken;
import org.bouncycastle.tsp.ers.ERSByteData;
import org.bouncycastle.tsp.ers.ERSEvidenceRecord;

public class ErsCheck {
    private static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"")
            .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "\"";
    }

    private static String describe(Exception e) {
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    private static X509CertificateHolder tsaCertificate(TimeStampToken token) {
        @SuppressWarnings("unchecked")
        Collection<X509CertificateHolder> certs =
            token.getCertificates().getMatches(token.getSID());
        if (certs.isEmpty()) {
            throw new IllegalStateException("timestamp without its TSA certificate");
        }
        return certs.iterator().next();
    }

    /** The JSON line for one record and data file; valid[0] says whether it is valid. */
    static String check(String evidence, String dataFile, boolean[] valid) {
        SimpleDateFormat iso = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'");
        iso.setTimeZone(TimeZone.getTimeZone("UTC"));
        List<String> stamps = new ArrayList<>();
        String error = null;
        String recordValidate = null;
        boolean present = false;
        try {
            byte[] der = Files.readAllBytes(Path.of(evidence));
            byte[] data = Files.readAllBytes(Path.of(dataFile));
            DigestCalculatorProvider digests =
                new JcaDigestCalculatorProviderBuilder().setProvider("BC").build();
            ERSEvidenceRecord record = new ERSEvidenceRecord(der, digests);
            record.validatePresent(new ERSByteData(data), new Date());
            present = true;
            EvidenceRecord asn = record.toASN1Structure();
            int c = 0;
            for (ArchiveTimeStampChain chain :
                    asn.getArchiveTimeStampSequence().getArchiveTimeStampChains()) {
                for (ArchiveTimeStamp ats : chain.getArchiveTimestamps()) {
                    TimeStampToken token = new TimeStampToken(ats.getTimeStamp());
                    X509CertificateHolder tsa = tsaCertificate(token);
                    token.validate(new JcaSimpleSignerInfoVerifierBuilder()
                                   .setProvider("BC").build(tsa));
                    stamps.add("{\"chain\": " + c
                               + ", \"gen_time\": " + quote(iso.format(token.getTimeStampInfo().getGenTime()))
                               + ", \"algorithm\": " + quote(ats.getDigestAlgorithmIdentifier().getAlgorithm().getId())
                               + ", \"tsa\": " + quote(tsa.getSubject().toString()) + "}");
                }
                c++;
            }
            try {
                record.validate(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC")
                                .build(record.getSigningCertificate()));
            } catch (Exception e) {
                recordValidate = describe(e) + (e.getCause() == null ? ""
                                                 : " (" + e.getCause().getMessage() + ")");
            }
        } catch (Exception e) {
            error = describe(e);
        }
        valid[0] = error == null;
        return "{\"valid\": " + (error == null) + ", \"present\": " + present
            + ", \"timestamps\": [" + String.join(", ", stamps) + "]"
            + ", \"error\": " + (error == null ? "null" : quote(error))
            + ", \"record_validate\": " + (recordValidate == null ? "null" : quote(recordValidate))
            + "}";
    }

    public static void main(String[] args) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        boolean[] valid = new boolean[1];
        if (args.length == 1 && args[0].equals("--batch")) {
            BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] pair = line.split("\t", 2);
                System.out.println(check(pair[0], pair.length > 1 ? pair[1] : "", valid));
            }
            System.exit(0);
        }
        System.out.println(check(args[0], args[1], valid));
        System.exit(valid[0] ? 0 : 1);
    }
}
